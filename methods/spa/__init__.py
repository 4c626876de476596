"""SPA / Selfie: self-generated preference data with self-refined DPO (arXiv 2406.04412).

`method.py` drives the iterations, `labels.py` judges samples with the policy's implicit reward,
`loss.py` holds the self-refined DPO loss (imported lazily: it pulls in torch, transformers and TRL).
"""
from methods.spa.method import SPA

__all__ = ["SPA"]
