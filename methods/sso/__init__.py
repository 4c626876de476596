"""SSO, self-steering optimization (arXiv 2410.17131): methods/sso/README.md."""
from methods.sso.method import SSO

__all__ = ["SSO"]
