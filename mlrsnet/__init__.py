"""MLR-SNet benchmark and reproduction suite."""

__version__ = "0.1.0"
