"""infobound: information-theoretic generalisation bounds for low-rank adapters, and their checks.

The numeric calculator imports numpy only; torch (``infobound.lora``, ``infobound.harness``) and
sympy (``infobound.symbolic``) load only when those modules are imported.
"""

from .bounds import (
    SeedBound,
    bound,
    equivalent_rank,
    mode_ratio,
    sample_size,
    seed_bound,
    seed_bounds_all_modes,
    trainable_params,
)
from .errors import InputError
from .presets import PRESETS, custom_spec, get_preset, preset_spec
from .spec import AdapterSpec, LayerSpec, Mode

__version__ = "0.1.0"

__all__ = [
    "AdapterSpec",
    "InputError",
    "LayerSpec",
    "Mode",
    "PRESETS",
    "SeedBound",
    "bound",
    "custom_spec",
    "equivalent_rank",
    "get_preset",
    "mode_ratio",
    "preset_spec",
    "sample_size",
    "seed_bound",
    "seed_bounds_all_modes",
    "trainable_params",
]
