"""PIT, implicit self-improvement (arXiv 2310.00898): methods/pit/README.md."""
from methods.pit.method import PIT

__all__ = ["PIT"]
