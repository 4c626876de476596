"""SPA / Selfie: self-generated preference data with self-refined DPO (arXiv 2406.04412).

`method.py` is the iterative-DPO loop (`methods/iterative_dpo.py`) with SPA's hooks; the implicit-reward
labeler is shared (`methods/core/labelers.py`); `loss.py` holds the self-refined DPO loss (imported lazily: it pulls in torch, transformers and TRL).
"""
from methods.spa.method import SPA

__all__ = ["SPA"]
