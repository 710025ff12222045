"""Fault types, found by the ``brokerbench.faults`` entry point group (``registry``)."""
