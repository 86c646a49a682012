"""jsplit: energy-aware split inference and model compression over time-varying wireless channels."""

__version__ = "0.1.0"
