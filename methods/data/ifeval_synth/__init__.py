"""The embedded default's gold-judge benchmark: everyday requests with checkable constraints.

See benchmark.py for the splits, constraints.py for the constraint kinds, prompts.py for the requests.
"""
from methods.data.ifeval_synth.benchmark import IFEvalSynth
from methods.data.ifeval_synth.constraints import (
    CONFLICTS,
    CONSTRAINTS,
    Constraint,
    conflicts,
    constraint_from_dict,
    sample_constraints,
)
from methods.data.ifeval_synth.prompts import SUBJECTS, TEMPLATES, Subject, make_item

__all__ = [
    "CONFLICTS",
    "CONSTRAINTS",
    "Constraint",
    "IFEvalSynth",
    "SUBJECTS",
    "Subject",
    "TEMPLATES",
    "conflicts",
    "constraint_from_dict",
    "make_item",
    "sample_constraints",
]
