"""Benchmark evaluations of models and checkpoints, with results in the lake's ``evals`` table."""
