"""initlab: a laboratory for weight initialization in neural networks."""

__version__ = "0.1.0"
