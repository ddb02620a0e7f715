"""Batch jobs over the lake: declared inputs and outputs, frozen params, one ``run``."""
