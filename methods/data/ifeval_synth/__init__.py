"""The embedded default's gold-judge benchmark (see benchmark.py)."""
from methods.data.ifeval_synth.benchmark import IFEvalSynth
from methods.data.ifeval_synth.constraints import REGISTRY, Constraint

__all__ = ["IFEvalSynth", "Constraint", "REGISTRY"]
