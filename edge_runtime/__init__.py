"""Edge runtime for importance-guided split inference. Never imports torch."""

__version__ = "0.1.0"
