"""LoRA layers with the four adapter modes, frozen-factor inits, explicit merging, and ``spec_from_model``.

A ``LoRALinear`` wraps a frozen ``nn.Linear`` (weight ``W0: (d_out, d_in)``) and adds
``scaling · B A x`` with ``A: (r, d_in)``, ``B: (d_out, r)`` and ``scaling = alpha / r``. The mode lives
only in ``requires_grad`` and in what the optimizer receives (``trainable_parameters``):

====== ======================================== ==========================================
mode   trained (``requires_grad=True``)          frozen
====== ======================================== ==========================================
lora   ``lora_A`` (random init), ``lora_B`` (0)  base weight and bias
b_only ``lora_B`` (starts at 0)                  ``lora_A`` (random draw), base
a_only ``lora_A`` (starts at 0)                  ``lora_B`` (random draw), base
full   ``lora_delta: (d_out, d_in)`` (starts 0)  base (the delta is added to it unscaled)
====== ======================================== ==========================================

A frozen factor is an ``nn.Parameter`` with ``requires_grad=False`` (not a buffer): every adapter
tensor then sits under the ``lora_`` prefix in ``named_parameters`` and ``state_dict`` in every mode,
and ``trainable_parameters`` (the optimizer's list) never contains it. A later
``model.requires_grad_(True)`` would unfreeze it; ``spec_from_model`` detects that and refuses.

Because the trained factor starts at zero, the adapted model equals the base model exactly at init.
Every random draw uses its own ``torch.Generator`` seeded with the layer's seed, so it does not depend
on (or disturb) torch's global random state.

Stacked replicas (``stack=K``) hold K independent adapters over one shared frozen base, for sweeps
of many runs of the same shape at once: ``lora_A: (K, r, d_in)``, ``lora_B: (K, d_out, r)``, and the
forward maps ``(K, batch, d_in) -> (K, batch, d_out)``. Replica k draws exactly what an unstacked
layer with ``seed=seeds[k]`` draws.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from numbers import Real

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .validation import check_int
from .presets import ALL_LINEAR, parse_targets
from .spec import AdapterSpec, FrozenInit, LayerSpec, Mode

MAX_SEED = 2**63 - 1

__all__ = [
    "FrozenInit",
    "LoRALinear",
    "derive_seed",
    "draw_factor",
    "fixed_input",
    "folded_replicas",
    "inject_lora",
    "lora_layers",
    "spec_from_model",
    "stack_size",
    "trainable_parameters",
]


# ------------------------------------------------------------------------------------ draws
def check_seed(name: str, value) -> int:
    """A seed: an integer in [0, 2**63 - 1]."""
    return check_int(name, value, 0, MAX_SEED)


def derive_seed(seed: int, index: int) -> int:
    """A seed for item ``index`` (e.g. the index of a layer) derived deterministically from ``seed``.

    Uses numpy's ``SeedSequence`` (well-mixed, platform independent); the result is in [0, 2**63 - 1].
    """
    seed = check_seed("seed", seed)
    index = check_int("index", index, 0)
    words = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return ((int(words[0]) << 32) | int(words[1])) & MAX_SEED


def draw_factor(factor: str, d_in: int, d_out: int, rank: int, init: FrozenInit | str, seed: int) -> torch.Tensor:
    """The random draw of factor ``"A"`` ``(rank, d_in)`` or ``"B"`` ``(d_out, rank)``, float64 on CPU."""
    init = FrozenInit.parse(init)
    gen = torch.Generator(device="cpu").manual_seed(check_seed("seed", seed))
    shape = (rank, d_in) if factor == "A" else (d_out, rank)
    if init is FrozenInit.ORTHONORMAL:
        m = torch.rand(d_out, d_in, generator=gen, dtype=torch.float64) - 0.5  # W's shape
        u, _, vh = torch.linalg.svd(m, full_matrices=False)
        if factor == "A":
            return _fix_signs(vh[:rank])  # (r, d_in), orthonormal rows
        return _fix_signs(u[:, :rank].T).T  # (d_out, r), orthonormal columns
    if init is FrozenInit.GAUSSIAN:
        return torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(rank)
    bound = 1.0 / math.sqrt(shape[1])  # kaiming_uniform_(a=√5): gain·√(3/fan_in) = 1/√fan_in
    return (2.0 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1.0) * bound


def _fix_signs(rows: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its entry of largest magnitude is positive."""
    pivot = rows.gather(1, rows.abs().argmax(dim=1, keepdim=True))
    return rows * torch.where(pivot < 0, -1.0, 1.0).to(rows.dtype)


# ------------------------------------------------------------------------------------ layer
class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a low-rank (or, in ``full`` mode, dense) trainable update.

    Args:
        base: the linear layer to adapt; its weight and bias get ``requires_grad=False``.
        rank: r, in [1, min(d_in, d_out)]; recorded but unused in ``full`` mode.
        mode: ``lora``, ``b_only``, ``a_only`` or ``full`` (``Mode`` or its string).
        alpha: scaling numerator; ``None`` means ``alpha = rank`` (scaling 1). Not applied in ``full``.
        init: the random factor's draw, a ``FrozenInit`` or its string.
        seed: seed of the random draw (unstacked layer).
        stack: K, the number of stacked replicas; ``None`` for an ordinary layer.
        seeds: K seeds, one per replica (default ``seed + k``); only with ``stack``.
    """

    def __init__(
        self,
        base: nn.Linear,
        rank: int,
        mode: Mode | str = Mode.LORA,
        alpha: float | None = None,
        init: FrozenInit | str = FrozenInit.ORTHONORMAL,
        seed: int = 0,
        stack: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise InputError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        self.d_in, self.d_out = base.in_features, base.out_features
        self.rank = check_int(
            f"rank (layer {self.d_in} -> {self.d_out}, min(d_in, d_out) = {min(self.d_in, self.d_out)})",
            rank, 1, min(self.d_in, self.d_out),
        )
        self.mode = Mode.parse(mode)
        self.init = FrozenInit.parse(init)
        if alpha is None:
            alpha = self.rank
        if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(alpha) or alpha <= 0:
            raise InputError(f"alpha must be a finite number > 0 (or None for alpha = rank), got {alpha!r}")
        self.alpha = float(alpha)
        self.scaling = self.alpha / self.rank
        self.seed = check_seed("seed", seed)
        self.stack, self.seeds = _check_stack(stack, seeds, self.seed)
        self.origin: tuple[int, tuple[int, ...]] | None = None
        """Set by ``inject_lora``: ``(i, seeds)``, the layer being the model's i-th ``nn.Linear`` and its
        draws ``derive_seed(seeds[k], i)`` (one seed per replica); None for a layer built directly."""
        self.base = base
        base.requires_grad_(False)
        self.merged = False
        self._saved_weight: torch.Tensor | None = None  # the unmerged base weight while merged
        self._fixed: tuple[torch.Tensor, dict] | None = None  # (input, its frozen products): fixed_input

        like = dict(dtype=base.weight.dtype, device=base.weight.device)
        lead = () if self.stack is None else (self.stack,)
        if self.mode is Mode.FULL:
            self.lora_delta = nn.Parameter(torch.zeros(*lead, self.d_out, self.d_in, **like))
            return
        trained_a = self.mode in (Mode.LORA, Mode.A_ONLY)
        trained_b = self.mode in (Mode.LORA, Mode.B_ONLY)
        random_factor = "B" if self.mode is Mode.A_ONLY else "A"  # the other starts at zero
        seed_list = [self.seed] if self.stack is None else list(self.seeds)
        draws = [draw_factor(random_factor, self.d_in, self.d_out, self.rank, self.init, s) for s in seed_list]
        drawn = torch.stack(draws) if self.stack is not None else draws[0]
        drawn = drawn.to(**like)
        if random_factor == "A":
            a, b = drawn, torch.zeros(*lead, self.d_out, self.rank, **like)
        else:
            a, b = torch.zeros(*lead, self.rank, self.d_in, **like), drawn
        self.lora_A = nn.Parameter(a, requires_grad=trained_a)  # (r, d_in) or (K, r, d_in)
        self.lora_B = nn.Parameter(b, requires_grad=trained_b)  # (d_out, r) or (K, d_out, r)

    # ------------------------------------------------------------------------------ forward
    def trained_names(self) -> tuple[str, ...]:
        """Names of the parameters this layer's mode trains."""
        return {
            Mode.LORA: ("lora_A", "lora_B"),
            Mode.B_ONLY: ("lora_B",),
            Mode.A_ONLY: ("lora_A",),
            Mode.FULL: ("lora_delta",),
        }[self.mode]

    def delta_weight(self) -> torch.Tensor:
        """The update added to the base weight: ``scaling · B A`` (``(K,) d_out × d_in``), or the delta."""
        if self.mode is Mode.FULL:
            return self.lora_delta
        return self.scaling * (self.lora_B @ self.lora_A)  # (d_out, r) @ (r, d_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stack is not None:
            return self._forward_stacked(x)
        out = self.base(x)
        if self.merged:
            return out
        if self.mode is Mode.FULL:
            return out + nn.functional.linear(x, self.lora_delta)
        h = nn.functional.linear(x, self.lora_A)  # (..., d_in) -> (..., r)
        return out + self.scaling * nn.functional.linear(h, self.lora_B)  # -> (..., d_out)

    def _forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Replica k: x_k @ (W0 + ΔW_k)ᵀ + bias, with ΔW_k = scaling · B_k A_k (or the delta).

        Forming the K adapted weights first costs K·d_out·r·d_in, far less than the batch's products,
        and turns three matmuls per layer (base, A, B) into one batched product.
        """
        folded = getattr(_FOLDED, "on", False) and x.dim() >= 2 and x.shape[0] % self.stack == 0
        if x.dim() < 2 or (x.shape[0] != self.stack and not folded):
            raise InputError(
                f"input of a stacked layer must have shape (K={self.stack}, ..., d_in={self.d_in}), "
                f"got {tuple(x.shape)}"
            )
        x3 = x.reshape(self.stack, -1, self.d_in)  # (K, batch, d_in)
        fixed = self._fixed
        if fixed is not None and x is fixed[0] and self.mode is Mode.B_ONLY:
            return self._forward_fixed(x3, fixed[1]).reshape(*x.shape[:-1], self.d_out)
        weight = self._stacked_weight()  # (K, d_out, d_in)
        if self.base.bias is None:
            out = torch.bmm(x3, weight.transpose(1, 2))  # (K, b, d_in) @ (K, d_in, d_out)
        else:
            out = torch.baddbmm(self.base.bias, x3, weight.transpose(1, 2))
        return out.reshape(*x.shape[:-1], self.d_out)

    def _stacked_weight(self) -> torch.Tensor:
        """W0 + ΔW_k for every replica: one ``baddbmm`` (W0 + scaling · B_k A_k) instead of a product,
        a scaling and a sum (fewer operations per step, forward and backward)."""
        if self.mode is Mode.FULL:
            return self.base.weight + self.lora_delta
        return torch.baddbmm(self.base.weight, self.lora_B, self.lora_A, alpha=self.scaling)

    def _forward_fixed(self, x3: torch.Tensor, cache: dict) -> torch.Tensor:
        """``b_only``'s stacked forward of the input registered by ``fixed_input``: its products with
        the frozen tensors, ``x·W0ᵀ + bias`` and ``x·Aᵀ``, are computed once and kept; each call adds
        only ``scaling · (x·Aᵀ)·Bᵀ``, and the backward is B's gradient alone."""
        if "base" not in cache:
            with torch.no_grad():
                cache["base"] = nn.functional.linear(x3, self.base.weight, self.base.bias)  # (K, b, d_out)
                cache["xa"] = torch.bmm(x3, self.lora_A.transpose(1, 2))  # (K, b, r)
        return torch.baddbmm(cache["base"], cache["xa"], self.lora_B.transpose(1, 2), alpha=self.scaling)

    # ------------------------------------------------------------------------------ merging
    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight``; the forward then skips the adapter.

        The unmerged weight is kept (one copy of W) so that ``unmerge`` restores it bit for bit.
        """
        self._check_mergeable("merge")
        if self.merged:
            raise RuntimeError("merge: the layer is already merged; call unmerge() first")
        self._saved_weight = self.base.weight.detach().clone()
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the base weight saved by ``merge`` (exactly) and use the adapter again."""
        self._check_mergeable("unmerge")
        if not self.merged:
            raise RuntimeError("unmerge: the layer is not merged")
        self.base.weight.copy_(self._saved_weight)
        self._saved_weight = None
        self.merged = False

    def _check_mergeable(self, what: str) -> None:
        if self.stack is not None:
            raise RuntimeError(
                f"{what}: a stacked layer (K={self.stack} replicas sharing one base) cannot be merged; "
                "merge an unstacked layer"
            )

    def extra_repr(self) -> str:
        stack = "" if self.stack is None else f", stack={self.stack}"
        return (f"d_in={self.d_in}, d_out={self.d_out}, rank={self.rank}, mode={self.mode}, "
                f"alpha={self.alpha:g}, init={self.init}{stack}, merged={self.merged}")


_FOLDED = threading.local()


@contextlib.contextmanager
def folded_replicas() -> Iterator[None]:
    """Within this context (in this thread), stacked layers also accept ``(K·b, ..., d_in)``: the K
    replicas' batches folded into one, replica-major (rows ``k·b`` to ``k·b + b − 1`` are replica k's).
    A network that only takes one batch dimension (a transformers model) runs K replicas this way:
    fold ``(K, b, ...)`` to ``(K·b, ...)`` before it and unfold its output after. Everything it does
    between the adapted layers must treat examples independently (no batch norm)."""
    previous = getattr(_FOLDED, "on", False)
    _FOLDED.on = True
    try:
        yield
    finally:
        _FOLDED.on = previous


@contextlib.contextmanager
def fixed_input(model: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Within this context, a stacked ``b_only`` ``LoRALinear`` of ``model`` called with this very
    tensor ``x`` (the same object, e.g. a full training batch fed to the first layer at every step)
    computes its products with the frozen tensors once, ``x·W0ᵀ + bias`` and ``x·Aᵀ``; every call
    then adds only ``scaling · (x·Aᵀ)·Bᵀ``. The same numbers as the ordinary forward up to float
    rounding (the unstacked layer's order of operations), for a fraction of the work. ``x`` and the
    frozen tensors must not change inside the context (an in-place change would go unseen); another
    input takes the ordinary forward. Other modes keep the ordinary forward: where A trains, the
    low-rank products (inner dimension r) and their gradients cost more than the one merged product
    they would replace (measured: 0.83-0.97x for lora and a_only)."""
    layers = [m for _, m in lora_layers(model) if m.stack is not None]
    for layer in layers:
        layer._fixed = (x, {})
    try:
        yield
    finally:
        for layer in layers:
            layer._fixed = None


def _check_stack(stack, seeds, seed: int) -> tuple[int | None, tuple[int, ...] | None]:
    if stack is None:
        if seeds is not None:
            raise InputError("seeds (one per stacked replica) needs stack=K; got seeds without stack")
        return None, None
    stack = check_int("stack", stack, 1)
    if seeds is None:
        return stack, tuple(check_seed("seed + k", seed + k) for k in range(stack))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise InputError(f"seeds must be a list of {stack} integer seeds, got {seeds!r}")
    seeds = tuple(check_seed(f"seeds[{k}]", s) for k, s in enumerate(seeds))
    if len(seeds) != stack:
        raise InputError(f"seeds must hold one seed per replica: stack={stack}, got {len(seeds)} seeds")
    return stack, seeds


# ------------------------------------------------------------------------------------ models
def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)  # PEFT's rule for a list of names


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def inject_lora(
    model: nn.Module,
    targets: str | Sequence[str],
    rank: int,
    mode: Mode | str = Mode.LORA,
    alpha: float | None = None,
    init: FrozenInit | str = FrozenInit.ORTHONORMAL,
    seed: int = 0,
    stack: int | None = None,
    seeds: Sequence[int] | None = None,
    train_extra: str | Sequence[str] = (),
) -> list[str]:
    """Replace every targeted ``nn.Linear`` of ``model`` (in place) with a ``LoRALinear``.

    Targets follow PEFT: a module matches when its qualified name equals a target or ends with
    ``"." + target``; ``"all-linear"`` selects every ``nn.Linear`` (PEFT would leave out an output
    head; here, name the layers instead). Layer i of the model's ``nn.Linear`` modules (model order,
    counting untargeted ones too) draws with ``derive_seed(seed, i)``; stacked replica k with
    ``derive_seed(seeds[k], i)``, so replica k equals an unstacked injection with ``seed=seeds[k]``.
    Every other parameter is frozen except those of the modules named in ``train_extra`` (same
    matching rule). Returns the replaced names in model order.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    seed = check_seed("seed", seed)
    rank = check_int("rank", rank, 1)
    stack, seeds = _check_stack(stack, seeds, seed)
    lora_names = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    linears = [
        (n, m) for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and not any(_inside(n, p) for p in lora_names)
    ]
    available = ", ".join(n for n, _ in linears) or "(none)"
    names = parse_targets(targets)
    if names == (ALL_LINEAR,):
        chosen = {n for n, _ in linears}
    else:
        chosen = set()
        for target in names:
            if target == ALL_LINEAR:
                raise InputError(f"targets: {ALL_LINEAR} cannot be combined with other module names")
            hits = {n for n, _ in linears if _matches(n, target)}
            if not hits:
                raise InputError(
                    f"targets: {target!r} matches no nn.Linear of the model; available: {available}, "
                    f"or {ALL_LINEAR}"
                )
            chosen |= hits
    if not chosen:
        raise InputError("targets: the model has no nn.Linear layer to adapt")
    extra_names = _extra_modules(model, train_extra)
    for name in chosen:
        for extra in extra_names:
            if _inside(name, extra):
                raise InputError(
                    f"train_extra: module {extra!r} contains the adapted layer {name!r}; a layer is "
                    "either adapted or fully trained, not both"
                )
    for name, module in linears:
        if name in chosen and rank > min(module.in_features, module.out_features):
            raise InputError(
                f"rank must be at most min(d_in, d_out) = {min(module.in_features, module.out_features)} "
                f"for layer {name!r} ({module.in_features} -> {module.out_features}), got {rank}"
            )

    model.requires_grad_(False)
    for extra in extra_names:
        model.get_submodule(extra).requires_grad_(True)
    for prefix in lora_names:  # layers adapted earlier keep what their mode trains
        layer = model.get_submodule(prefix)
        for pname, p in layer.named_parameters():
            p.requires_grad_(pname in layer.trained_names())
    replaced = []
    for index, (name, module) in enumerate(linears):
        if name not in chosen:
            continue
        layer = LoRALinear(
            module, rank, mode=mode, alpha=alpha, init=init, seed=derive_seed(seed, index),
            stack=stack, seeds=None if stack is None else [derive_seed(s, index) for s in seeds],
        )
        layer.origin = (index, (seed,) if stack is None else tuple(seeds))
        _set_submodule(model, name, layer)
        replaced.append(name)
    return replaced


def _extra_modules(model: nn.Module, train_extra) -> list[str]:
    if isinstance(train_extra, str):
        train_extra = [t for t in train_extra.split(",") if t.strip()]
    modules = [n for n, _ in model.named_modules() if n]
    found = []
    for target in dict.fromkeys(str(t).strip() for t in train_extra):
        hits = [n for n in modules if _matches(n, target)]
        if not hits:
            top = ", ".join(n for n, _ in model.named_children()) or "(none)"
            raise InputError(f"train_extra: {target!r} matches no module of the model; top-level modules: {top}")
        found.extend(hits)
    return list(dict.fromkeys(found))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """``(qualified name, layer)`` of every ``LoRALinear`` in ``model``, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def stack_size(model: nn.Module) -> int | None:
    """K of the model's stacked ``LoRALinear`` layers (all must agree); ``None`` if none is stacked."""
    sizes = {m.stack for _, m in lora_layers(model)}
    if not sizes:
        raise InputError("model has no LoRALinear layer; call inject_lora first")
    if len(sizes) > 1:
        raise InputError(f"all LoRALinear layers must share one stack size (K), got {sorted(sizes, key=str)}")
    return sizes.pop()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad`` (each once): exactly what the optimizer receives."""
    return [p for p in model.parameters() if p.requires_grad]


def spec_from_model(model: nn.Module, bits: int = 16) -> AdapterSpec:
    """The ``AdapterSpec`` measured from a model carrying ``LoRALinear`` layers.

    Layers are named by their qualified module names. When every layer has the same rank it is the
    spec's rank; otherwise every layer carries its own rank (and the spec's rank is the largest).
    ``extra`` counts the trainable parameters outside ``LoRALinear`` layers, grouped by top-level
    module name. For a stacked model the counts are per replica (shared extras count once).
    Raises ``InputError`` when layers disagree on the mode or a layer's ``requires_grad`` flags
    differ from what its mode trains, since the spec would then miscount the optimizer's parameters.
    """
    layers = lora_layers(model)
    if not layers:
        raise InputError("model has no LoRALinear layer; call inject_lora first")
    modes = {m.mode for _, m in layers}
    if len(modes) > 1:
        found = ", ".join(f"{n}: {m.mode}" for n, m in layers)
        raise InputError(f"all LoRALinear layers must share one mode, got {found}")
    for name, layer in layers:
        trained = {n for n, p in layer.named_parameters() if p.requires_grad}
        if trained != set(layer.trained_names()):
            raise InputError(
                f"layer {name!r} in mode {layer.mode} should train exactly {', '.join(layer.trained_names())}, "
                f"but trains {', '.join(sorted(trained)) or 'nothing'}"
            )
    ranks = [m.rank for _, m in layers]
    uniform = len(set(ranks)) == 1
    specs = tuple(LayerSpec(n, m.d_in, m.d_out, None if uniform else m.rank) for n, m in layers)
    inside = {id(p) for _, m in layers for p in m.parameters()}
    extra: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in inside:
            key = name.split(".", 1)[0]
            extra[key] = extra.get(key, 0) + p.numel()
    return AdapterSpec(specs, rank=max(ranks), mode=modes.pop(), bits=bits, extra=extra)
