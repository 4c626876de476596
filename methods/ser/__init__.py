"""SER, self-evolved reward learning (arXiv 2411.00418): methods/ser/README.md."""
from methods.ser.method import SER

__all__ = ["SER"]
