"""Head-mask subnetworks and the heuristic core (Bhaskar, Friedman, Chen, ACL 2024).

:mod:`.gates` holds the hard-concrete distribution, the gated units and mean ablation;
:mod:`.learn` the mask training (KL to the full model + Lagrangian sparsity); :mod:`.analysis`
the one-call analysis :func:`heuristic_core` and its :class:`SubnetworkResult`.
"""

from extractive_lens.subnetworks.analysis import (
    SubnetworkResult,
    component_totals,
    heuristic_core,
)
from extractive_lens.subnetworks.gates import (
    LIMIT_LEFT,
    LIMIT_RIGHT,
    TEMPERATURE,
    LearnedMask,
    MaskUnits,
    UnitMeans,
    deterministic_gates,
    gated,
    prob_one,
    prob_zero,
    sample_gates,
    unit_means,
)
from extractive_lens.subnetworks.learn import MaskConfig, learn_mask, target_at

__all__ = [
    "LIMIT_LEFT",
    "LIMIT_RIGHT",
    "TEMPERATURE",
    "LearnedMask",
    "MaskConfig",
    "MaskUnits",
    "SubnetworkResult",
    "UnitMeans",
    "component_totals",
    "deterministic_gates",
    "gated",
    "heuristic_core",
    "learn_mask",
    "prob_one",
    "prob_zero",
    "sample_gates",
    "target_at",
    "unit_means",
]
