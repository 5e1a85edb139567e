"""semfield: distilled feature fields on CPU and GPU in plain PyTorch."""

__version__ = "0.1.0"
