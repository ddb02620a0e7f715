"""Trajectory synthesis (ASTRA part 1): the synthesizer interface and its offline implementation."""
