"""brokerbench's engine: settings, local broker stack, drivers and the command line."""

__version__ = "0.1.0"
