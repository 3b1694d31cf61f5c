"""Sweeps: modes × ranks × n × seeds × bits, trained in stacks, stored run by run.

The unit of work is a *group*: one (task, mode, rank, n) with every seed of the sweep. Its seeds
train at once as a stack of replicas (each replica: its own training subset and its own frozen-factor
draw, both from its seed), then each trained replica is evaluated unquantised or quantised to every
requested bit width. `run_group` is a plain function of a `GroupConfig`, so any
``concurrent.futures``-style executor can run groups; the store keeps one record per
(config, seed, bits) key.

A group always trains all of its seeds, in the same stack, whatever is already stored: a replica's
numbers therefore never depend on which other runs happened to be missing, and a rerun after a kill
reproduces the stored records exactly (only missing keys are written).
"""

from __future__ import annotations

import functools
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


from ..errors import InputError, Interrupted
from ..presets import select_layers
from ..spec import AdapterSpec, FrozenInit, LayerSpec, Mode
from ..validation import check_int, check_list, check_names, check_real, describe

MAX_SEEDS = 1_000_000
MAX_STEPS = 10_000_000
MAX_SUPERSAMPLES = 10_000
MAX_MASKS = 10_000
KINDS = ("seeds", "cmi")
"""``seeds``: every configuration trained once per seed on a fresh training subset, tested on the
task's test set. ``cmi``: the supersample suite of THEORY §5, k1 supersamples of n pairs × k2 masks."""

RANKLESS = 0  # the rank recorded for full fine-tuning, where no rank applies
SPLITS = ("auto", "fixed", "per_seed")
"""``auto`` (the default): ``per_seed`` for a seed sweep of a task that can redraw its split
(``Task.resplits``: digits, mnist), else ``fixed``. ``fixed``: every seed draws its training subset from the task's pool and is tested on the task's one
test set; ``per_seed``: every seed redraws the split of the data the network never pretrained on into
its own training and test sets (``Task.resplit``), so the spread over seeds includes the split's."""
CLIP_RULES = ("fixed", "auto")
"""``fixed``: the clip given; ``auto``: ``auto_clip``, derived from the settings before training."""


@dataclass(frozen=True)
class SweepConfig:
    """What to run. Lists are tuples; ``bits`` holds ``None`` for an unquantised evaluation."""

    task: str = "digits"
    modes: tuple[Mode, ...] = (Mode.LORA, Mode.B_ONLY, Mode.A_ONLY)
    ranks: tuple[int, ...] = (1, 2, 4, 8)
    ns: tuple[int, ...] = (100, 200, 400, 700)
    seeds: int = 12
    bits: tuple[int | None, ...] = (8,)
    alpha: float | None = None
    init: str = "orthonormal"
    steps: int = 300
    lr: float = 1e-2
    clip: float | str = 4.0
    """Half-width of the quantisation grid [-clip, clip]; ``"auto"`` derives it before training from
    the optimiser's worst case (``auto_clip``), resolved here to that number (``clip_rule="auto"``)."""
    targets: tuple[str, ...] | None = None
    kind: str = "seeds"
    supersamples: int = 2
    """k1, supersamples per configuration (``kind="cmi"`` only)."""
    masks: int = 20
    """k2, masks per supersample, trained as one stack (``kind="cmi"`` only)."""
    clip_rule: str = "fixed"
    """How ``clip`` was chosen: ``fixed`` (given as a number) or ``auto`` (``auto_clip``). Set by
    ``clip="auto"``; a number given with ``clip_rule="auto"`` must be the derived one."""
    split: str = "auto"
    """``SPLITS``: one test set for every seed, or a split redrawn per seed (``kind="seeds"`` only);
    ``auto`` is resolved by ``resolved_split()`` when the groups are made."""
    batch_size: int | None = None
    """Minibatch size of fine-tuning (None: the task's ``default_batch_size``, full batch for the MLPs)."""
    tune_lrs: tuple[float, ...] | None = None
    """Learning-rate candidates: each group picks its lr (and steps) on a validation split of its
    training data (``harness.tuning``), paying log2(candidates) bits in every bound; None: ``lr``."""
    tune_steps: tuple[int, ...] | None = None
    """Step-count candidates (None: ``steps``); with either list given the sweep tunes."""
    validation_fraction: float = 0.2
    """Share of each run's training set held out to choose among the candidates (tuning only)."""
    device: str = "cpu"
    """Where the stacked training and evaluation run: ``cpu`` or ``cuda`` (``cuda:N``), recorded in
    every record. A run's numbers agree across devices up to float rounding, not bit for bit, so a
    device other than cpu is part of the store key (cpu keys are those of earlier versions)."""

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if not isinstance(self.task, str) or not self.task.strip():
            raise InputError(f"task must be a task name (digits, teacher, linreg or mnist, optionally NAME:SHIFT), got {describe(self.task)}")
        set_("task", self.task.strip())
        set_("modes", check_list("modes", self.modes, lambda name, m: Mode.parse(m)))
        set_("ranks", check_list("ranks", self.ranks, _count))
        set_("ns", check_list("n", self.ns, _count))
        set_("seeds", check_int("seeds", self.seeds, 1, MAX_SEEDS))
        set_("bits", check_list("bits", self.bits, _bits))
        set_("steps", check_int("steps", self.steps, 1, MAX_STEPS))
        set_("lr", check_real("lr", self.lr, 0.0, open_low=True))
        if self.alpha is not None:
            set_("alpha", check_real("alpha", self.alpha, 0.0, open_low=True))
        set_("init", FrozenInit.parse(self.init).value)
        if self.targets is not None:
            set_("targets", check_names("targets", self.targets))
        if not isinstance(self.kind, str) or self.kind.strip().lower() not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)}, got {describe(self.kind)}")
        set_("kind", self.kind.strip().lower())
        set_("supersamples", check_int("supersamples (k1)", self.supersamples, 1, MAX_SUPERSAMPLES))
        set_("masks", check_int("masks (k2)", self.masks, 2, MAX_MASKS))
        if not isinstance(self.split, str) or self.split.strip().lower() not in SPLITS:
            raise InputError(f"split must be one of {', '.join(SPLITS)}, got {describe(self.split)}")
        set_("split", self.split.strip().lower())
        if self.split == "per_seed" and self.kind != "seeds":
            raise InputError(f"split 'per_seed' applies to kind 'seeds' (a supersample is its own split), got kind {self.kind!r}")
        if self.batch_size is not None:
            set_("batch_size", check_int("batch_size", self.batch_size, 1, MAX_STEPS))
        candidates = self.candidates()  # InputError on an empty or bad grid
        if candidates is not None:
            set_("tune_lrs", candidates.lrs)
            set_("tune_steps", candidates.steps)
            set_("validation_fraction", candidates.validation_fraction)
            if self.kind != "seeds":
                raise InputError("tuning (tune_lrs / tune_steps) applies to kind 'seeds': a supersample's masks "
                                 "would share one choice made on all of their data")
        set_("device", check_device("device", self.device))
        self._resolve_clip()  # last: the automatic clip depends on the settings above

    def _resolve_clip(self) -> None:
        rule = self.clip_rule
        if not isinstance(rule, str) or rule.strip().lower() not in CLIP_RULES:
            raise InputError(f"clip_rule must be one of {', '.join(CLIP_RULES)}, got {describe(rule)}")
        rule = rule.strip().lower()
        if isinstance(self.clip, str) and self.clip.strip().lower() == "auto":
            clip, rule = auto_clip(self), "auto"
        else:
            clip = check_clip("clip", self.clip)
            if rule == "auto" and clip != auto_clip(self):
                raise InputError(f"clip_rule 'auto' needs clip = {auto_clip(self)!r}, the value derived "
                                 f"for this sweep (auto_clip), got {clip!r}; pass clip='auto'")
        object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "clip_rule", rule)

    def candidates(self):
        """The tuning grid (``tuning.Candidates``), or None when the sweep does not tune."""
        return _candidates(self.tune_lrs, self.tune_steps, self.lr, self.steps, self.validation_fraction)

    @property
    def max_lr_steps(self) -> tuple[float, int]:
        """The largest lr and step count any run can use (the automatic clip's worst case)."""
        candidates = self.candidates()
        if candidates is None:
            return self.lr, self.steps
        return max(candidates.lrs), max(candidates.steps)

    def resolved_split(self) -> str:
        """``split`` with ``auto`` resolved from the task (imports the task registry, so torch)."""
        if self.split != "auto":
            return self.split
        from .tasks import TASKS, split_task_name

        return "per_seed" if self.kind == "seeds" and TASKS[split_task_name(self.task)[0]].resplits else "fixed"

    @property
    def runs_per_group(self) -> int:
        """Trained replicas per group: the seeds, or the masks of one supersample."""
        return self.masks if self.kind == "cmi" else self.seeds

    def groups(self) -> list["GroupConfig"]:
        """Every unit of work, in a stable order; full fine-tuning once per n (rank does not apply)."""
        out, split = [], self.resolved_split()
        for mode in self.modes:
            ranks = (RANKLESS,) if mode is Mode.FULL else self.ranks
            for rank in ranks:
                for n in self.ns:
                    for supersample in (range(self.supersamples) if self.kind == "cmi" else (None,)):
                        out.append(GroupConfig(
                            task=self.task, mode=mode, rank=rank, n=n, seeds=tuple(range(self.runs_per_group)),
                            bits=self.bits, alpha=self.alpha, init=self.init, steps=self.steps, lr=self.lr,
                            clip=self.clip, targets=self.targets, kind=self.kind, supersample=supersample,
                            clip_rule=self.clip_rule, split=split, batch_size=self.batch_size,
                            tune_lrs=self.tune_lrs, tune_steps=self.tune_steps,
                            validation_fraction=self.validation_fraction, device=self.device,
                        ))
        return out


@dataclass(frozen=True)
class GroupConfig:
    """One stack of runs: everything but the seed and the evaluation bits is shared."""

    task: str
    mode: Mode
    rank: int
    n: int
    seeds: tuple[int, ...]
    bits: tuple[int | None, ...]
    alpha: float | None
    init: str
    steps: int
    lr: float
    clip: float
    targets: tuple[str, ...] | None
    kind: str = "seeds"
    supersample: int | None = None
    """Index j of the supersample (``kind="cmi"``); ``seeds`` are then its mask indices."""
    clip_rule: str = "fixed"
    """How ``clip`` was chosen (recorded; not part of the key: the number is what the runs used)."""
    split: str = "fixed"
    batch_size: int | None = None
    tune_lrs: tuple[float, ...] | None = None
    tune_steps: tuple[int, ...] | None = None
    validation_fraction: float = 0.2
    device: str = "cpu"

    def candidates(self):
        """The tuning grid, or None (``SweepConfig.candidates``)."""
        return _candidates(self.tune_lrs, self.tune_steps, self.lr, self.steps, self.validation_fraction)

    def run_config(self, seed: int, bits: int | None) -> dict:
        """The config that identifies one record (its store key is a hash of this). A seed sweep's
        config has no ``kind`` or ``supersample`` entry, and settings at their original defaults
        (split fixed, full batch) are left out, so its keys are those of earlier versions;
        ``clip_rule`` is left out, so a clip chosen by ``auto`` keys as the same number given."""
        optional = {"split": "fixed", "batch_size": None, "device": "cpu"}
        config = {k: v for k, v in asdict(self).items()
                  if k not in ("seeds", "bits", "kind", "supersample", "clip_rule", "tune_lrs", "tune_steps",
                               "validation_fraction")
                  and not (k in optional and v == optional[k])}
        candidates = self.candidates()
        if candidates is not None:  # the grid replaces lr and steps as what the runs were given
            config.update(tune={"lrs": list(candidates.lrs), "steps": list(candidates.steps),
                                "validation_fraction": candidates.validation_fraction})
        config.update(mode=self.mode.value, seed=seed, bits=bits,
                      targets=None if self.targets is None else list(self.targets))
        if self.kind != "seeds":
            config.update(kind=self.kind, supersample=self.supersample)
        return config

    def frozen_seeds(self) -> list[int]:
        """The frozen factor's seed of every replica, fixed before any data is seen."""
        return replica_frozen_seeds(self.kind, self.supersample, self.seeds)

    @property
    def seed_count(self) -> int:
        """How many frozen-factor seeds this kind of sweep can use (a code of the seed pays log2 of it)."""
        return MAX_SEEDS if self.kind == "seeds" else MAX_SUPERSAMPLES * MAX_MASKS

    def keys(self) -> list[str]:
        from .store import config_key

        return [config_key(self.run_config(s, b)) for s in self.seeds for b in self.bits]


# ------------------------------------------------------------------------------ automatic clip
ADAM_BETAS = (0.9, 0.999)
"""(β1, β2) of the optimiser ``train.train_stacked`` builds: ``torch.optim.Adam``'s defaults (eps
1e-8, no weight decay, no amsgrad, as used there)."""
ROUNDING_ALLOWANCE = 2.0**-20
"""Relative allowance per step, ``(1 + 2**-20) ** steps`` in all, for float32 rounding in Adam's
arithmetic and in the parameter's running sum (the bound below is for exact arithmetic); 1.0003 at
300 steps."""
CLIP_DIGITS = 4
"""The automatic clip is rounded up to this many significant digits (a readable number, still a bound)."""
_EXACT_STEPS = 100_000  # c_t is summed term by term up to here; beyond, c_t = c_∞ to 1e-40 (and c_t ≤ c_∞)


def adam_step_bound(t: int, betas: tuple[float, float] = ADAM_BETAS) -> float:
    """c_t: the most that step ``t`` (1, 2, ...) of ``torch.optim.Adam`` can move one entry, in units of lr.

    Adam (``m_0 = v_0 = 0``): ``m_t = β1 m_{t−1} + (1−β1) g_t``, ``v_t = β2 v_{t−1} + (1−β2) g_t²``,
    ``Δx_t = −lr · (m_t / (1−β1^t)) / (sqrt(v_t / (1−β2^t)) + eps)``. With eps > 0 dropped (it only
    shrinks the step; v_t = 0 forces m_t = 0), ``|Δx_t| ≤ lr · |m_t| / sqrt(v_t) · sqrt(1−β2^t) / (1−β1^t)``.
    Write ``m_t = (1−β1) Σ_i (β1/√β2)^{t−i} · (√β2^{t−i} g_i)``; Cauchy–Schwarz gives
    ``|m_t| ≤ (1−β1) · sqrt(Σ_{j<t} γ^j) · sqrt(v_t / (1−β2))`` with ``γ = β1²/β2``, hence

        c_t = (1−β1)/(1−β1^t) · sqrt((1−β2^t)/(1−β2)) · sqrt((1−γ^t)/(1−γ)).

    ``c_1 = 1``; c_t increases to ``c_∞ = (1−β1) / sqrt((1−β2)(1−γ))`` ≈ 7.27 for (0.9, 0.999). That
    is 2.3 times the often-quoted ``(1−β1)/sqrt(1−β2)`` ≈ 3.16 (Kingma & Ba §2.1), the step after a
    gradient that was zero at every earlier step: that case is not the worst. Equality holds at every
    step at once for gradients growing as ``(β2/β1)^t``, so no smaller bound holds for all gradient
    sequences. Summed, the bias corrections make early steps small: Σ_{t≤T} c_t is below T · 3.16 up
    to T = 482 and above it from T = 483 on (772.5 against 948.7 at T = 300).
    """
    b1, b2 = betas
    g = b1 * b1 / b2
    return (1 - b1) / (1 - b1**t) * math.sqrt((1 - b2**t) / (1 - b2)) * math.sqrt((1 - g**t) / (1 - g))


def adam_travel_bound(steps: int, betas: tuple[float, float] = ADAM_BETAS) -> float:
    """``Σ_{t=1}^{steps} c_t``: the most ``steps`` Adam steps can move one entry, in units of lr
    (attained by gradients growing as ``(β2/β1)^t``). Steps beyond 100,000 count ``c_∞`` each."""
    b1, b2 = betas
    exact = min(steps, _EXACT_STEPS)
    total = math.fsum(adam_step_bound(t, betas) for t in range(1, exact + 1))
    c_inf = (1 - b1) / math.sqrt((1 - b2) * (1 - b1 * b1 / b2))
    return total + (steps - exact) * c_inf


def init_max_abs(config: SweepConfig) -> float:
    """A bound on ``|x_0|`` of every trained entry of the sweep, known before training.

    0 for a factor trained from zero (B in lora and b_only, A in a_only, full's delta). For lora's A,
    by init: orthonormal ≤ 1 (an entry of a unit vector); kaiming ≤ 1/√d_in (Uniform(−1/√d_in,
    1/√d_in)), the largest over the adapted layers; gaussian is unbounded, so the largest |entry| of
    the sweep's actual draws (fixed by the frozen seeds, which no data decides; more seeds or ranks can
    raise it).
    """
    if Mode.LORA not in config.modes:
        return 0.0
    init = FrozenInit.parse(config.init)
    if init is FrozenInit.ORTHONORMAL:
        return 1.0
    return _drawn_max_abs(config.task, config.targets, init.value, config.ranks, _sweep_frozen_seeds(config))


def auto_clip(config: SweepConfig) -> float:
    """The clip of ``clip="auto"``: no trained entry can leave [−clip, clip], whatever the data.

    ``clip = ⌈(max|x_0| + lr · Σ_{t=1}^{steps} c_t) · (1 + 2**-20)^steps⌉`` to 4 significant digits:
    ``init_max_abs`` plus Adam's worst-case travel (``adam_step_bound``: c_t ≤ 7.27, but ≈ 2.58 per
    step on average over the first 300 because of the bias corrections), with an allowance for float32
    rounding. It depends only on the settings (not on alpha, the loss or the data: Adam's step does not
    scale with the gradient), so it is fixed before training and the grid costs no bits. It is a
    worst case, attained only by gradients that grow exponentially; trained entries usually stay far
    inside it, so the grid is coarser than one fitted to them (the report shows the rounding cost).
    The default sweep (300 steps, lr 0.01, lora with orthonormal A) gives 8.728 (b_only alone: 7.728).
    """
    lr, steps = config.max_lr_steps  # with tuning: the largest candidates, the worst case of any choice
    travel = lr * adam_travel_bound(steps)
    return _round_up((init_max_abs(config) + travel) * (1.0 + ROUNDING_ALLOWANCE) ** steps)


def _candidates(lrs, steps, lr: float, default_steps: int, fraction: float):
    if lrs is None and steps is None:
        return None
    from .tuning import Candidates

    return Candidates(lrs=(lr,) if lrs is None else lrs, steps=(default_steps,) if steps is None else steps,
                      validation_fraction=fraction)


def _round_up(value: float, digits: int = CLIP_DIGITS) -> float:
    """The smallest number of ``digits`` significant digits that is ≥ ``value`` (> 0)."""
    quantum = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    out = float(f"{math.ceil(value / quantum) * quantum:.{digits}g}")
    while out < value:  # decimal rounding of the product: step up to the next representable number
        out = math.nextafter(out, math.inf)
    return out


def _sweep_frozen_seeds(config: SweepConfig) -> tuple[int, ...]:
    if config.kind == "cmi":
        return tuple(s for j in range(config.supersamples)
                     for s in replica_frozen_seeds("cmi", j, range(config.masks)))
    return tuple(replica_frozen_seeds("seeds", None, range(config.seeds)))


@functools.lru_cache(maxsize=16)
def _drawn_max_abs(task_name: str, targets, init: str, ranks: tuple[int, ...], seeds: tuple[int, ...]) -> float:
    """max |A_0| of lora's A over every rank and frozen seed of a sweep (kaiming: its bound 1/√d_in)."""
    from ..lora import inject_lora, lora_layers
    from .tasks import get_task

    task = get_task(task_name)
    targets = targets or task.default_targets
    # only the architecture matters (shapes, layer order): an untrained copy spares the pretraining
    def architecture():
        import torch

        with torch.random.fork_rng(devices=[]):  # its random initial weights leave the global RNG alone
            return task.architecture()

    if init == FrozenInit.KAIMING.value:
        layers = select_layers(linear_layers(architecture()), targets, model=task_name)
        return max(1.0 / math.sqrt(layer.d_in) for layer in layers)
    out = 0.0
    for rank in ranks:
        model = architecture()
        inject_lora(model, targets, rank, mode=Mode.LORA, init=init, stack=len(seeds), seeds=list(seeds))
        out = max(out, max(float(layer.lora_A.detach().abs().max()) for _, layer in lora_layers(model)))
    return out


DEVICES = ("cpu", "cuda")


def check_device(name: str, value) -> str:
    """``cpu``, or ``cuda`` / ``cuda:N`` where torch sees that GPU; InputError naming ``--device`` otherwise."""
    text = value.strip().lower() if isinstance(value, str) else None
    kind, _, index = (text or "").partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"{name} (--device) must be cpu or cuda (cuda:N for GPU N), got {describe(value)}")
    if kind == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        raise InputError(f"{name} (--device) {text!r} asks for a CUDA GPU, but torch sees none (torch "
                         f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
    if index and int(index) >= available:
        raise InputError(f"{name} (--device) {text!r}: torch sees {available} CUDA GPU(s), cuda:0 to "
                         f"cuda:{available - 1}")
    return text


def check_clip(name: str, value) -> float:
    """A clip: a finite number > 0 (``"auto"`` is handled by ``SweepConfig``)."""
    try:
        return check_real(name, value, 0.0, open_low=True)
    except InputError:
        raise InputError(f"{name} must be a finite number > 0 or 'auto', got {describe(value)}") from None


def run_group(group: GroupConfig, progress: Callable[[int], None] | None = None) -> list[dict]:
    """Train the group's stack, evaluate every replica at every bit width; one record per (seed, bits).

    The first call in a process tunes its allocator to keep freed memory (``allocator``): faster
    steps, the same numbers."""
    from .allocator import keep_freed_memory

    keep_freed_memory()
    return _run_group(group, progress)


def _run_group(group: GroupConfig, progress: Callable[[int], None] | None) -> list[dict]:
    from ..bounds import DEFAULT_SIGMA, seed_bound
    from ..lora import inject_lora, spec_from_model
    from ..quantize import UniformGrid, quantize_trainable_
    from .closed_forms import linreg_losses
    from .tasks import get_task
    from .train import evaluate_stacked, train_stacked
    from .tuning import select

    t0 = time.perf_counter()
    task = get_task(group.task)
    targets = group.targets or task.default_targets
    seeds = list(group.seeds)
    k = len(seeds)

    model = task.base_model().to(group.device)  # before inject_lora: the adapters follow the base
    layers = select_layers(linear_layers(model), targets, model=group.task)  # the bound's side
    rank = 1 if group.mode is Mode.FULL else group.rank
    inject_lora(model, targets, rank, mode=group.mode, alpha=group.alpha, init=group.init,
                stack=k, seeds=group.frozen_seeds())
    data = _cmi_data(task, group) if group.kind == "cmi" else _seed_data(task, group)
    data = {name: value.to(group.device) if hasattr(value, "to") else value for name, value in data.items()}
    x_train, y_train, x_test = data["x_train"], data["y_train"], data["x_test"]
    loss = _loss(task)
    zero_one = task.loss_kind == "zero_one"

    batch_size = task.default_batch_size if group.batch_size is None else group.batch_size
    candidates = group.candidates()
    selection = None
    lr, steps = group.lr, group.steps
    if candidates is not None:  # choose lr and steps on a validation split of each run's training set
        def build():
            fresh = task.base_model().to(group.device)
            inject_lora(fresh, targets, rank, mode=group.mode, alpha=group.alpha, init=group.init,
                        stack=k, seeds=group.frozen_seeds())
            return fresh

        selection = select(build, x_train, y_train, candidates, loss=loss, seed=seeds[0],
                           batch_size=batch_size)
        lr, steps = selection.lr, selection.steps
    choice_bits = 0.0 if selection is None else selection.bits
    train_stacked(model, x_train, y_train, steps=steps, lr=lr, loss=loss,
                  batch_size=effective_batch(batch_size, group.n), seed=seeds[0], progress=progress)
    trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    clipped, largest = _replica_clipping(trained, group.clip)  # each replica's own, before any rounding
    certify = zero_one and any(b is not None for b in group.bits)
    raw = _measure(evaluate_stacked, model, data, loss) if certify else None  # the unquantised errors
    choices = {} if selection is None else {"lr and steps": candidates.size}
    adaptive = _adaptive(model, trained, data, loss, group, choices) if zero_one else None

    records = []
    for bits in group.bits:
        quantised = None
        if bits is not None:
            quantised = quantize_trainable_(model, UniformGrid(bits, group.clip))
            if abs(quantised.fraction_clipped - sum(clipped) / k) > 1e-9:
                raise RuntimeError(f"clipped fractions per replica {clipped} do not average to the "
                                   f"stack's {quantised.fraction_clipped}")
        measured = _measure(evaluate_stacked, model, data, loss)
        spec = spec_from_model(model, bits=bits or 64)
        expected = AdapterSpec(layers, rank=rank, mode=group.mode, bits=bits or 64)
        if spec.factor_totals() != expected.factor_totals() or spec.trainable_params != expected.trainable_params:
            raise RuntimeError(f"the trained model's spec {spec} differs from the bound's {expected}")
        applicable = bits is not None and zero_one
        sb = (seed_bound(spec, group.n, sigma=DEFAULT_SIGMA, bits=bits or 64, choice_bits=choice_bits)
              if applicable else None)
        closed = linreg_losses(task, model, group.mode) if task.name == "linreg" else {}
        indices = _replica_indices(model, trained, bits, group.clip) if certify and bits is not None else None
        test_n = int(x_test.shape[1])
        certified = _certify(group, indices, bits, measured, test_n, choices) if indices is not None else None
        for i, seed in enumerate(seeds):
            record = _record(group, task, seed, bits, measured, i, spec.trainable_params, sb,
                             None if quantised is None else clipped[i], test_n=test_n)
            record["trained_max_abs"] = largest[i]
            record["train_batch_size"] = effective_batch(batch_size, group.n)  # None: full batch
            if selection is not None:  # what was chosen, on what, and its price in bits
                record.update(selection.as_record(), lr=lr, steps=steps, choice_bits=choice_bits)
            record.update({name: values[i] for name, values in closed.items()})
            arrays = {}
            if raw is not None:
                record["unquantised_train_error"] = float(raw["train"]["error"][i])
                record["unquantised_test_error"] = float(raw["test"]["error"][i])
            if certified is not None:
                fields, arrays = certified[i]
                record.update(fields)
            if adaptive is not None:  # the same run's chosen-grid certificate, on each of its records
                record.update(adaptive[i][0])
                arrays.update(adaptive[i][1])
            if group.kind == "cmi":  # a run is (supersample, mask); its seed numbers it within the sweep
                record.update(supersample=group.supersample, mask=seed, seed=group.supersample * k + seed)
                arrays.update(_pair_losses(data["mask"][i], measured, i))
            record[ARRAYS_FIELD] = arrays
            records.append(record)
        _restore(model, trained)  # back to the unquantised trained values for the next bit width
    per_run = (time.perf_counter() - t0) / k
    for record in records:
        record["wall_time"] = per_run
    return records


ARRAYS_FIELD = "_arrays"
"""Field of a record returned by ``run_group`` holding its arrays (stored beside it, not in it)."""


def effective_batch(batch_size: int | None, n: int) -> int | None:
    """The minibatch size a group of n training examples trains with: full batch (None) when
    ``batch_size`` is None or at least n."""
    return None if batch_size is None or batch_size >= n else batch_size


def _seed_data(task, group: GroupConfig) -> dict:
    """Each seed's own training subset; the task's fixed test set, shared by every replica (a view),
    or with split ``per_seed`` each seed's own test set."""
    import torch

    k = len(group.seeds)
    if group.split == "per_seed":
        drawn = [task.resplit(group.n, seed=s) for s in group.seeds]
        stack = lambda part, j: torch.stack([torch.as_tensor(d[part][j]) for d in drawn])  # noqa: E731
        return {"x_train": stack(0, 0), "y_train": stack(0, 1), "x_test": stack(1, 0), "y_test": stack(1, 1)}
    train = [task.train_set(group.n, seed=s) for s in group.seeds]
    x_test, y_test = (torch.as_tensor(a) for a in task.test_set())
    return {"x_train": torch.stack([torch.as_tensor(x) for x, _ in train]),  # (K, n, d_in)
            "y_train": torch.stack([torch.as_tensor(y) for _, y in train]),  # (K, n) or (K, n, d_out)
            "x_test": x_test.expand(k, *x_test.shape), "y_test": y_test.expand(k, *y_test.shape)}


def mask_of(supersample: int, mask: int, n: int):
    """U ∈ {0, 1}^n of run ``mask`` of supersample ``supersample``: the point of each pair trained on."""
    from .tasks.base import STREAM_MASK, stream_rng

    return stream_rng(supersample, mask, STREAM_MASK).integers(0, 2, n).astype("uint8")


def _cmi_data(task, group: GroupConfig) -> dict:
    """Supersample j's n pairs; replica m trains on the point U_i of each pair and is tested on the other."""
    import numpy as np
    import torch

    x, y = task.supersample(group.n, group.supersample)  # (n, 2, d), (n, 2)
    masks = np.stack([mask_of(group.supersample, m, group.n) for m in group.seeds])  # (K, n)
    rows = torch.arange(group.n)
    chosen = torch.from_numpy(masks.astype(np.int64))
    pick = lambda t, u: torch.stack([t[rows, m] for m in u])  # noqa: E731  (K, n, ...)
    return {"x_train": pick(x, chosen), "y_train": pick(y, chosen), "x_test": pick(x, 1 - chosen),
            "y_test": pick(y, 1 - chosen), "mask": masks}


def _measure(evaluate, model, data: dict, loss: str) -> dict:
    return {"train": evaluate(model, data["x_train"], data["y_train"], loss=loss),
            "test": evaluate(model, data["x_test"], data["y_test"], loss=loss)}


def _pair_losses(mask, measured: dict, i: int) -> dict:
    """Both points' 0-1 losses of every pair, (n, 2) int8, and the mask (THEORY §5)."""
    import numpy as np

    train, test = measured["train"]["zero_one"][i], measured["test"]["zero_one"][i]
    losses = np.empty((len(mask), 2), dtype=np.int8)
    rows = np.arange(len(mask))
    losses[rows, mask] = train
    losses[rows, 1 - mask] = test
    return {"pair_losses": losses, "mask": np.asarray(mask, dtype=np.uint8)}


def _replica_indices(model, trained: dict, bits: int, clip: float) -> list[dict]:
    """Each replica's trained tensors as grid indices (name -> array), in the model's order; checked
    against the quantised parameters, so the code describes exactly the evaluated model."""
    import numpy as np

    from ..codelength import Grid

    grid = Grid(bits, clip)
    out = None
    for name, p in model.named_parameters():
        if name not in trained:
            continue
        values = trained[name].double().cpu().numpy()  # (K, ...)
        idx = grid.indices(values)
        if not np.array_equal(grid.values(idx).astype(np.float32), p.detach().cpu().numpy().astype(np.float32)):
            raise RuntimeError(f"grid indices of {name} do not reproduce its quantised values")
        if out is None:
            out = [{} for _ in range(values.shape[0])]
        for i in range(values.shape[0]):
            out[i][name] = idx[i]
    return out or []


def _trained_values(trained: dict) -> dict:
    """The trained tensors as float64 numpy arrays (K, ...), the values every grid rounds."""
    return {name: t.detach().double().cpu().numpy() for name, t in trained.items()}


def _per_replica(indices: dict) -> list[dict]:
    """name -> (K, ...) indices as one dict name -> array per replica, in the same order."""
    k = next(iter(indices.values())).shape[0] if indices else 0
    return [{name: idx[i] for name, idx in indices.items()} for i in range(k)]


def _set_parameters(model, grid, indices: dict) -> None:
    """Set the trained parameters to the points of ``indices`` (name -> (K, ...)) on ``grid``
    (``codelength.Grid``, which rounds as ``UniformGrid`` does, index for index:
    ``_replica_indices`` checks that on every sweep grid and on the first candidate grid); the
    evaluated model is then by construction the one the code describes."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in indices:
                p.copy_(torch.from_numpy(grid.values(indices[name])).to(p.dtype))


def _restore(model, trained: dict) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in trained:
                p.copy_(trained[name])


def _adaptive(model, trained: dict, data: dict, loss: str, group: GroupConfig, choices: dict) -> list[tuple[dict, dict]]:
    """Each replica's certificate on the grid it chooses among ``codes.adaptive_grids()`` (the choice
    paid in its code): each replica takes the candidate with the smallest estimated certificate
    (training error and code only); a candidate's quantised model is evaluated on the training sets
    unless its estimate at training error 0 already loses for every replica
    (``codes.choose_adaptive_lazily``: the same choice as evaluating all). The test sets are then
    evaluated only on the grids some replica chose (the choice never looks at them)."""
    from ..quantize import UniformGrid, quantize_trainable_
    from .codes import adaptive_bits, adaptive_grids, choose_adaptive_lazily, run_certificates, seed_bits
    from .train import evaluate_stacked

    grids = adaptive_grids()
    values = _trained_values(trained)  # float64 once, for every candidate grid
    # the first candidate also through quantize_trainable_, as a check of the numpy grid's indices
    quantize_trainable_(model, UniformGrid(grids[0].bits, grids[0].clip))
    _replica_indices(model, trained, grids[0].bits, grids[0].clip)
    _restore(model, trained)
    on_grid = [{name: grid.indices(v) for name, v in values.items()} for grid in grids]  # (K, ...) each
    indices = [_per_replica(idx) for idx in on_grid]
    bits_of_seed = seed_bits(group.mode, group.seed_count)
    extra_bits = bits_of_seed + sum(math.log2(c) for c in choices.values())

    def errors_on(j: int, x, y):
        _set_parameters(model, grids[j], on_grid[j])
        try:
            return evaluate_stacked(model, x, y, loss=loss, error_only=True)["error"]
        finally:
            _restore(model, trained)

    chosen, train_errors = choose_adaptive_lazily(adaptive_bits(indices, extra_bits), group.n,
                                                  lambda j: errors_on(j, data["x_train"], data["y_train"]))
    test_n = int(data["x_test"].shape[1])
    test_errors = {j: errors_on(j, data["x_test"], data["y_test"]) for j in sorted(set(chosen))}
    return run_certificates([indices[j][i] for i, j in enumerate(chosen)], [grids[j] for j in chosen],
                            bits_of_seed, [float(train_errors[j][i]) for i, j in enumerate(chosen)],
                            group.n, [float(test_errors[j][i]) for i, j in enumerate(chosen)],
                            test_n, grid_candidates=len(grids), prefix="adaptive_", choices=choices)


def _certify(group: GroupConfig, indices: list[dict], bits: int, measured: dict, test_n: int,
             choices: dict) -> list[tuple[dict, dict]]:
    from ..codelength import Grid
    from .codes import run_certificates, seed_bits

    return run_certificates(indices, [Grid(bits, group.clip)] * len(indices), seed_bits(group.mode, group.seed_count),
                            [float(e) for e in measured["train"]["error"]], group.n,
                            [float(e) for e in measured["test"]["error"]], test_n, choices=choices)


def _replica_clipping(trained: dict, clip: float) -> tuple[list[float], list[float]]:
    """Per replica: the fraction of its trained entries with |x| > clip, and its largest |x|."""
    import torch

    tensors = [t.detach().to(torch.float64).flatten(1) for t in trained.values()]  # (K, entries) each
    if not tensors:
        return [], []
    values = torch.cat(tensors, dim=1).abs()
    fractions = (values > clip).sum(dim=1).double() / values.shape[1]
    return [float(f) for f in fractions], [float(m) for m in values.max(dim=1).values]


def _record(group, task, seed, bits, measured, i, trainable, sb, clipped, test_n) -> dict:
    from .store import config_key

    train, test = measured["train"], measured["test"]
    zero_one = task.loss_kind == "zero_one"
    if zero_one:
        gap = float(test["error"][i] - train["error"][i])
    else:
        gap = float(test["loss"][i] - train["loss"][i])
    if bits is None:
        why = "parameters not quantised"
    elif not zero_one:
        why = "loss unbounded (mse)"
    else:
        why = ""
    return {
        "key": config_key(group.run_config(seed, bits)),
        "kind": group.kind,
        "task": group.task,
        "mode": group.mode.value,
        "rank": group.rank,
        "n": group.n,
        "seed": seed,
        "bits": bits,
        "alpha": float(group.rank if group.alpha is None else group.alpha),
        "init": group.init,
        "steps": group.steps,
        "lr": group.lr,
        "clip": group.clip,
        "clip_rule": group.clip_rule,
        "split": group.split,
        "batch_size": group.batch_size,
        "targets": None if group.targets is None else ",".join(group.targets),
        "train_error": float(train["error"][i]) if zero_one else None,
        "test_error": float(test["error"][i]) if zero_one else None,
        "train_loss": float(train["loss"][i]),
        "test_loss": float(test["loss"][i]),
        "gap": gap,
        "loss_kind": task.loss_kind,
        "trainable_params": int(trainable),
        "bound": None if sb is None else float(sb.bound),
        "bound_applicable": sb is not None,
        "bound_note": why,
        "clipped_fraction": clipped,
        "test_n": test_n,
        "versions": versions(),
        "device": group.device,
    }


def run_sweep(
    config: SweepConfig,
    store,
    *,
    executor=None,
    progress: bool = True,
) -> dict:
    """Run every group with a missing record; return counts (groups run, skipped, records written).

    ``executor`` is any object with ``map(fn, iterable)`` (``concurrent.futures`` executors work); by
    default groups run one after another in this process.
    """
    from tqdm.auto import tqdm

    groups = config.groups()
    todo = schedule([g for g in groups if store.missing(g.keys())])
    counts = {"groups": len(groups), "skipped": len(groups) - len(todo), "written": 0}
    bar = tqdm(total=len(todo), desc=f"{config.task} sweep", unit="group", disable=not progress)
    try:
        for index, records in completed(executor, run_group, todo):
            group = todo[index]
            counts["written"] += store.put_many(
                (r["key"], {k: v for k, v in r.items() if k not in ("key", ARRAYS_FIELD)},
                 group.run_config(r["mask"] if group.kind == "cmi" else r["seed"], r["bits"]),
                 r.get(ARRAYS_FIELD) or None)
                for r in records)
            bar.update(1)
            bar.set_postfix_str(f"{group.mode.value} r={group.rank} n={group.n}")
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(f"interrupted: {len(store)} records stored in {str(store.folder)!r} "
                          f"({counts['written']} written by this run); rerun the same command to resume")
    bar.close()
    return counts


def completed(executor, fn, items: list):
    """``(index, fn(item))`` for every item, each as soon as it is done, so a sweep stores every
    finished group even when another fails: through the executor's ``map_completed`` (infobound's
    executors), ``submit`` (a ``concurrent.futures`` executor: every other item still runs, then the
    first error is raised as ``WorkerFailed``), else its ``map`` in order; in this process without one."""
    if executor is None:
        for i, item in enumerate(items):
            yield i, fn(item)
    elif callable(getattr(executor, "map_completed", None)):
        yield from executor.map_completed(fn, items)
    elif callable(getattr(executor, "submit", None)):
        from concurrent.futures import as_completed

        from .executors import completed_futures

        futures = [executor.submit(fn, item) for item in items]
        try:
            yield from completed_futures("process", items, futures, as_completed)
        finally:
            for future in futures:
                future.cancel()
    else:
        yield from enumerate(executor.map(fn, items))


def schedule(groups: list[GroupConfig]) -> list[GroupConfig]:
    """The groups in the order a sweep hands them out: the costliest first (more examples × steps ×
    replicas, then higher rank), so that workers do not sit idle at the end behind one long group
    started last. Stable for equal costs; the records do not depend on the order."""
    def cost(g: GroupConfig) -> tuple:
        batch = effective_batch(g.batch_size, g.n) or g.n
        return (-(len(g.seeds) * g.steps * batch), -g.rank)

    return sorted(groups, key=cost)


def linear_layers(model) -> list[LayerSpec]:
    """Every ``nn.Linear`` of a (not yet adapted) model as a ``LayerSpec``, read from its shapes."""
    import torch

    return [LayerSpec(name, m.in_features, m.out_features)
            for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def process_pool(workers: int):
    """An executor running groups in ``workers`` worker processes, one torch thread each.

    On Linux the workers are forked from this process (``fork``): they start in milliseconds with
    everything this process has imported and built (torch, the task, its pretrained network),
    instead of importing and loading it all again in each (about 4.5 s a worker). A worker sets one
    torch thread before any work, so it never enters the parent's OpenMP thread pool. Where this
    process has initialised CUDA (which does not survive a fork), and on other systems, they are
    fresh processes (``spawn``). Either way the records are the same as in one process (each group is
    a pure function of its config). Up to C groups run at once on C cores. Workers ignore SIGINT
    (the parent handles Ctrl-C and stops them: ``stop_workers``) and end themselves within a second
    when the parent process dies, even by SIGKILL.
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = check_int("workers", workers, 1, 256)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(start_method()),
                               initializer=_worker_start, initargs=(os.getpid(),))


def start_method() -> str:
    """How ``process_pool`` starts its workers: ``fork`` on Linux unless this process has initialised
    CUDA, else ``spawn``."""
    import sys

    torch = sys.modules.get("torch")
    cuda_started = torch is not None and torch.cuda.is_initialized()
    return "fork" if sys.platform.startswith("linux") and not cuda_started else "spawn"


def stop_workers(pool) -> None:
    """Cancel what has not started and end the pool's worker processes now (after Ctrl-C)."""
    import multiprocessing

    pool.shutdown(wait=False, cancel_futures=True)
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(5)


def _worker_start(parent: int) -> None:
    """Worker start-up: one torch thread; Ctrl-C left to the parent; exit when the parent is gone."""
    import signal
    import threading

    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent: int, interval: float = 0.25) -> None:
    """End this process as soon as ``parent`` is no longer its parent (it died; we were re-parented)."""
    import os

    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def default_workers() -> int:
    """One worker process per available core, at most 4."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


def versions() -> str:
    import numpy
    import torch

    from .. import __version__

    return f"infobound {__version__}; torch {torch.__version__}; numpy {numpy.__version__}; python {platform.python_version()}"


def frozen_seed(seed: int) -> int:
    """The frozen factor's seed for a run seed: fixed before any data is seen, distinct from the subset's."""
    return 1_000_003 * (seed + 1)


def replica_frozen_seeds(kind: str, supersample: int | None, indices) -> list[int]:
    """The frozen seeds of replicas ``indices`` (seeds, or the masks of ``supersample`` for cmi)."""
    if kind == "cmi":
        return [frozen_seed(MAX_SEEDS + MAX_MASKS * supersample + m) for m in indices]
    return [frozen_seed(s) for s in indices]


def _loss(task) -> str:
    return "cross_entropy" if task.loss_kind == "zero_one" else "mse"


def _count(name: str, value) -> int:
    """An integer >= 1; a string item of a comma list (``"100,200"``) is read as a number."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InputError(f"{name} must be integers >= 1, got {describe(value)}") from None
    return check_int(name, value, 1)


def _bits(name: str, value) -> int | None:
    """A bit width 1 to 64, or None (also written 'none') for an unquantised evaluation."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "float")):
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InputError(f"{name} must be bit widths 1 to 64 or None, got {value!r}") from None
    return check_int(name, value, 1, 64)


# ------------------------------------------------------------------------------------ estimate
@dataclass(frozen=True)
class SweepPlan:
    """The size of a sweep and an estimate of its time, stated before training starts."""

    groups: int
    groups_todo: int
    runs: int
    runs_todo: int
    flops: float
    """Counted: 6 FLOPs per weight per example per step (forward and backward), 2 per evaluation."""
    workers: int
    largest_stack_bytes: float
    """float32 activations of the largest group (inputs of every linear layer, kept for backward)."""
    supersamples: int = 0
    """k1 of a supersample sweep (0 for a seed sweep): its groups are configurations × k1."""
    group_costs: tuple[tuple[int, int, float], ...] = ()
    """(K, steps, counted FLOPs) of every group to train, in the order they are handed out."""

    @property
    def seconds(self) -> float:
        """The cost model's estimate (``cost.FITTED``) of the wall time on ``workers`` processes."""
        from .cost import sweep_seconds

        return sweep_seconds(list(self.group_costs), min(self.workers, self.groups_todo))

    def describe(self) -> str:
        from .cost import FITTED

        runs = f"{self.groups} configurations × seeds = {self.runs:,} runs"
        if self.supersamples:
            runs = (f"{self.groups // self.supersamples} configurations × {self.supersamples} supersamples "
                    f"× masks = {self.runs:,} runs")
        if self.runs_todo == 0:
            return f"sweep: {runs}, all stored; nothing to train"
        left = f"{self.runs_todo:,} to train" if self.runs_todo < self.runs else "none stored yet"
        m = FITTED
        return (f"sweep: {runs} ({left}); ≈ {self.flops:.2g} FLOPs, estimated {_duration(self.seconds)} "
                f"on {min(self.workers, self.groups_todo)} worker(s) (an estimate: per group {m.per_group:.2g} s "
                f"+ {m.per_replica:.2g} s per seed + {m.per_step * 1e3:.2g} ms per step + FLOPs at "
                f"{m.flops_per_second / 1e9:.3g} GFLOP/s, + {m.worker_start:.2g} s worker start-up, constants fitted by "
                f"benchmarks/bench_scaling.py on {m.source}; other machines and loads differ); "
                f"largest stack ≈ {self.largest_stack_bytes / 2**30:.2g} GiB of activations")


def plan_sweep(config: SweepConfig, store, layers: list[LayerSpec], test_n: int, workers: int,
               tokens: int = 1, default_batch: int | None = None) -> SweepPlan:
    """Count what ``config`` will train (given what ``store`` holds) on a network with ``layers``,
    each applied to ``tokens`` positions of an example (1 for an MLP; patches + class token for a ViT)."""
    from .cost import group_flops

    weights = sum(layer.d_in * layer.d_out for layer in layers) * tokens
    width = sum(layer.d_in for layer in layers) * tokens
    groups = config.groups()
    todo = schedule([g for g in groups if store.missing(g.keys())])
    flops, peak, costs = 0.0, 0.0, []
    for g in todo:
        k = len(g.seeds)
        tested = g.n if g.kind == "cmi" else test_n  # a supersample run is tested on the other point of each pair
        batch = effective_batch(default_batch if g.batch_size is None else g.batch_size, g.n) or g.n
        trained_steps = g.steps if g.candidates() is None else g.steps + _tuning_steps(g)
        group = group_flops(k, batch, trained_steps, weights, g.n + tested, len(g.bits) + 1)
        flops += group
        costs.append((k, trained_steps, group))
        peak = max(peak, 4.0 * k * max(batch, tested) * width * 3)
    per_group = config.runs_per_group * len(config.bits)
    return SweepPlan(len(groups), len(todo), len(groups) * per_group, len(todo) * per_group, flops,
                     workers, peak, config.supersamples if config.kind == "cmi" else 0, tuple(costs))


def _tuning_steps(group: GroupConfig) -> int:
    """Steps the tuning adds to a group: one run of the largest step count per learning rate (on
    the fit part, counted as n here: a rough estimate), then the chosen run counted as ``steps``."""
    candidates = group.candidates()
    return len(candidates.lrs) * max(candidates.steps)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
