"""Self-Refine (Madaan et al., arXiv 2303.17651): feedback and refinement by the same model, no training.

`method.py` is the plugin (`SelfRefine`), `loop.py` the loop over any generation backend,
`feedback.py` the feedback parser, `prompts.py` + `prompts/*.yaml` the versioned prompts,
`api.py` an OpenAI-compatible chat model as generator.
"""
from methods.self_refine.method import SelfRefine

__all__ = ["SelfRefine"]
