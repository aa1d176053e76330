"""cbedflow: learn buried interface structure from simulated 4D-STEM data."""

__version__ = "0.1.0"
