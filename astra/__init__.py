"""The ``astra`` command: one entry point for every capability of ASTRA Lake."""
