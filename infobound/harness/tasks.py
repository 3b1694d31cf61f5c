"""Offline transfer tasks: a pretrained network, a target task that differs from it, and its data.

A ``Task`` offers ``base_model()`` (a fresh copy of the pretrained network), ``train_set(n, seed)``
(n target examples, deterministic, a different draw per seed), ``test_set()`` (fixed, never overlapping
a training set), ``source_test_set()`` and ``describe()``. Networks are ``nn.Sequential`` stacks of
named ``nn.Linear`` layers and elementwise ReLUs: they accept ``(K, batch, d_in)`` and ``(batch, d_in)``.
Tasks: ``digits`` (default; scikit-learn's bundled 8×8 digits, target = the images under a fixed pixel
permutation), ``teacher`` (a random teacher MLP, target = the teacher with a rank-k change of hidden
weights), ``linreg`` (THEORY.md §2 with one bias-free linear layer).

``loss_kind``: ``"zero_one"`` (y int64 labels ``(n,)``, outputs are logits) or ``"mse"`` (y float32
``(n, d_out)``; squared error *averaged* over outputs, as ``harness.train``'s ``Loss.MSE``, so the task
loss is THEORY's L (a sum over outputs) divided by d_out: ``LinregTask.loss_scale``).

No global RNG is touched: numpy draws use ``np.random.default_rng([seed, stream tag])``, one tag per
purpose; torch initialisation runs inside ``torch.random.fork_rng``; minibatches use a
``torch.Generator``. Training sets are prefix-consistent: ``train_set(n, s) = train_set(m, s)[:n]``.
"""

from __future__ import annotations

import functools
import math
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, check_int

# Stream tags: a numpy Generator is seeded with [seed, tag], so no two purposes share a stream.
_TEACHER, _CALIB, _PRETRAIN, _TRAIN_X, _TRAIN_NOISE, _TEST_X, _TEST_NOISE = range(1, 8)


def _check_float(name: str, value, low: float, high: float = math.inf, open_low: bool = False) -> float:
    """A finite float in [low, high] ((low, high] if ``open_low``), else ``InputError``."""
    allowed = f"a number in {'(' if open_low else '['}{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputError(f"{name} must be {allowed}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value > high or value < low or (open_low and value == low):
        raise InputError(f"{name} must be {allowed}, got {value!r}")
    return value


def _check_choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


# ------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class TaskConfig:
    """Settings of a task, validated on construction. ``seed`` fixes all but the training sets.
    ``_rules``: field -> ``("int", low[, high])``, ``("float", low, high, open_low)`` or ``("choice", allowed)``."""

    seed: int = 0
    _rules: ClassVar[dict[str, tuple]] = {}

    def __post_init__(self) -> None:
        self._set("seed", check_int("seed", self.seed, 0))
        for name, (kind, *args) in self._rules.items():
            value = getattr(self, name)
            if kind == "int":
                self._set(name, check_int(name, value, *args))
            elif kind == "float":
                self._set(name, _check_float(name, value, *args))
            else:
                _check_choice(name, value, *args)

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)


DIGIT_TRANSFORMS = {
    "mirror": (lambda img: img[..., :, ::-1], "horizontal mirror (column j -> 7 - j)"),
    "flip": (lambda img: img[..., ::-1, :], "vertical flip (row i -> 7 - i)"),
    "rotate180": (lambda img: img[..., ::-1, ::-1], "rotation by 180 degrees"),
    "transpose": (lambda img: np.swapaxes(img, -1, -2), "transpose (pixel (i, j) -> (j, i))"),
}
"""Target transforms of the 8×8 images: name -> (function on (..., 8, 8) arrays, description)."""


@dataclass(frozen=True)
class DigitsConfig(TaskConfig):
    """Digits. Default split (stratified, seed 0): 718 pretraining / 719 target pool / 360 test."""

    transform: str = "mirror"
    hidden: int = 64
    test_fraction: float = 0.2  # of all 1,797 images
    target_fraction: float = 0.5  # of the images left after the test set
    pretrain_steps: int = 1000
    pretrain_lr: float = 1e-3
    batch_size: int = 128
    _rules: ClassVar[dict[str, tuple]] = {
        "transform": ("choice", tuple(DIGIT_TRANSFORMS)), "hidden": ("int", 1),
        "test_fraction": ("float", 0.05, 0.9), "target_fraction": ("float", 0.05, 0.95),
        "pretrain_steps": ("int", 0), "pretrain_lr": ("float", 0.0, 1.0, True), "batch_size": ("int", 1),
    }


@dataclass(frozen=True)
class TeacherConfig(TaskConfig):
    """Teacher ``d_in -> teacher_hidden -> teacher_hidden -> n_classes`` (ReLU); student
    ``d_in -> hidden -> hidden -> n_classes``. Each teacher matrix W in ``delta_layers`` gets
    Δ = delta_scale · ‖W‖₂ · U Vᵀ (U, V random orthonormal, ``delta_rank`` columns): every singular
    value of Δ is delta_scale times W's largest."""

    d_in: int = 16
    n_classes: int = 4
    teacher_hidden: int = 32
    hidden: int = 64
    delta_rank: int = 2
    delta_scale: float = 1.0
    delta_layers: tuple[str, ...] = ("fc1",)
    pretrain_samples: int = 20_000
    pretrain_steps: int = 3000
    pretrain_lr: float = 3e-3
    batch_size: int = 256
    test_size: int = 5000
    max_n: int = 10**6
    _rules: ClassVar[dict[str, tuple]] = {
        "d_in": ("int", 1), "n_classes": ("int", 2), "teacher_hidden": ("int", 1), "hidden": ("int", 1),
        "delta_scale": ("float", 0.0), "pretrain_samples": ("int", 1), "pretrain_steps": ("int", 0),
        "pretrain_lr": ("float", 0.0, 1.0, True), "batch_size": ("int", 1), "test_size": ("int", 1),
        "max_n": ("int", 1),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        layers = self.delta_layers.split(",") if isinstance(self.delta_layers, str) else self.delta_layers
        layers = tuple(dict.fromkeys(_check_choice("delta_layers", str(k).strip(), ("fc1", "fc2")) for k in layers))
        if not layers:
            raise InputError("delta_layers must name at least one of fc1, fc2")
        self._set("delta_layers", layers)
        max_rank = {"fc1": min(self.teacher_hidden, self.d_in), "fc2": self.teacher_hidden}
        self._set("delta_rank", check_int("delta_rank", self.delta_rank, 1, min(max_rank[k] for k in layers)))


@dataclass(frozen=True)
class LinregConfig(TaskConfig):
    """Least squares. W0 has N(0, w0_scale²/d_in) entries (rounded to float32); Δ = delta_norm/√k ·
    U Vᵀ (U, V random orthonormal, k = ``delta_rank``), so ‖Δ‖_F = delta_norm; Σ = R diag(λ) Rᵀ with
    λ_j ∝ cov_decay^j (j = 0..d_in−1) scaled to Tr Σ = d_in, or ``cov_eigenvalues`` as given;
    R random orthogonal (``cov_basis="random"``) or I (``"identity"``); noise ε ~ N(0, noise_std² I)."""

    d_in: int = 32
    d_out: int = 16
    delta_rank: int = 2
    delta_norm: float = 1.0
    cov_decay: float = 0.8
    cov_eigenvalues: tuple[float, ...] | None = None
    cov_basis: str = "random"
    noise_std: float = 0.5
    w0_scale: float = 1.0
    test_size: int = 5000
    max_n: int = 10**6
    _rules: ClassVar[dict[str, tuple]] = {
        "d_in": ("int", 1), "d_out": ("int", 1), "delta_norm": ("float", 0.0),
        "cov_decay": ("float", 0.0, 1.0, True), "cov_basis": ("choice", ("random", "identity")),
        "noise_std": ("float", 0.0), "w0_scale": ("float", 0.0), "test_size": ("int", 1), "max_n": ("int", 1),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("delta_rank", check_int("delta_rank", self.delta_rank, 1, min(self.d_in, self.d_out)))
        if self.cov_eigenvalues is not None:
            values = tuple(_check_float("cov_eigenvalues", v, 0.0) for v in self.cov_eigenvalues)
            if len(values) != self.d_in:
                raise InputError(f"cov_eigenvalues must list d_in = {self.d_in} numbers >= 0, got {len(values)}")
            self._set("cov_eigenvalues", values)


# ------------------------------------------------------------------------------------- helpers
def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """``fc1 -> ReLU -> fc2 -> ReLU -> head``, initialised from the global torch RNG (fork it)."""
    return nn.Sequential(OrderedDict(
        fc1=nn.Linear(d_in, hidden), act1=nn.ReLU(),
        fc2=nn.Linear(hidden, hidden), act2=nn.ReLU(),
        head=nn.Linear(hidden, d_out),
    ))  # fmt: skip


def _build(factory, state: dict[str, torch.Tensor]) -> nn.Module:
    """``factory()`` with ``state`` loaded (copied: every model owns its tensors); global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        model = factory()
    model.load_state_dict(state)
    return model


def _pretrain(factory, x: torch.Tensor, y: torch.Tensor, seed: int, steps: int, lr: float,
              batch_size: int) -> dict[str, torch.Tensor]:
    """Adam on cross-entropy, minibatches drawn with replacement; deterministic in ``seed``. One intra-op
    thread (restored after): the nets are tiny, more threads only contend and reorder float reductions."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    batches = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():  # also when the caller runs under torch.no_grad()
            for _ in range(steps):
                idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=batches)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


_STATES: dict[TaskConfig, dict[str, torch.Tensor]] = {}  # pretrained weights by config, in memory
_STATES_LOCK = threading.Lock()


def clear_pretrain_cache(config: TaskConfig | None = None) -> None:
    """Forget the pretrained weights of ``config`` (default: of every config); they are trained again."""
    with _STATES_LOCK:
        for key in [config] if config is not None else list(_STATES):
            _STATES.pop(key, None)


def _cached_state(config: TaskConfig, train) -> dict[str, torch.Tensor]:
    """The pretrained weights for ``config``: ``train()`` once per process (about a second)."""
    with _STATES_LOCK:
        if config in _STATES:
            return _STATES[config]
    state = train()
    with _STATES_LOCK:
        return _STATES.setdefault(config, state)


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng(list(entropy))


def _orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) with orthonormal columns, Haar-distributed (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------------ the tasks
class Task(ABC):
    """A pretrained network, a target task and its data (see the module docstring for ``loss_kind``).

    Attributes: ``name``, ``loss_kind``, ``config``, ``d_in``, ``d_out``, ``n_classes`` (None for mse),
    ``max_n`` (the largest training set), ``default_targets`` (the ``nn.Linear`` layers adapted by default).
    """

    name: ClassVar[str]
    loss_kind: ClassVar[str]
    config_class: ClassVar[type[TaskConfig]]
    default_targets: ClassVar[tuple[str, ...]]
    d_in: int
    d_out: int
    n_classes: int | None
    max_n: int

    def __init__(self, config: TaskConfig | None = None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise InputError(f"config for task {self.name!r} must be a {self.config_class.__name__}, "
                             f"got {type(config).__name__}")
        self.config = config

    @abstractmethod
    def base_model(self) -> nn.Module:
        """A fresh copy of the pretrained network (independent tensors, identical values every call)."""

    def train_set(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n target training examples ``(x (n, d_in) float32, y)``; deterministic in ``(n, seed)``."""
        return self._train_set(*self._check_draw(n, seed))

    def _check_draw(self, n, seed) -> tuple[int, int]:
        n = check_int("n", n, 1)
        if n > self.max_n:
            raise InputError(f"n must be an integer in [1, {self.max_n}] (max_n of task {self.name!r}), got {n}")
        return n, check_int("seed", seed, 0)

    @abstractmethod
    def _train_set(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    @abstractmethod
    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed held-out target test set (fresh tensors on every call)."""

    @abstractmethod
    def source_test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out inputs labelled by the pretraining (source) task, for before/after comparisons."""

    @abstractmethod
    def describe(self) -> str:
        """The task and its split, in words, for the report."""


class _PretrainedMLP(Task):
    """A classification task whose network is ``mlp(d_in, hidden, n_classes)`` pretrained on a source set."""

    loss_kind = "zero_one"
    default_targets = ("fc1", "fc2")  # the head stays frozen, so d_train is the adapter's alone

    @abstractmethod
    def pretrain_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The source examples the network is pretrained on."""

    def _factory(self) -> nn.Module:
        return mlp(self.d_in, self.config.hidden, self.n_classes)

    def base_model(self) -> nn.Module:
        cfg = self.config
        train = lambda: _pretrain(self._factory, *self.pretrain_set(), cfg.seed,  # noqa: E731
                                  cfg.pretrain_steps, cfg.pretrain_lr, cfg.batch_size)
        return _build(self._factory, _cached_state(cfg, train))

    def _accuracies(self) -> list[float]:
        """The pretrained network's test accuracy on the source labels and on the target task."""
        model = self.base_model()
        with torch.no_grad():
            return [float((model(x).argmax(-1) == y).float().mean()) for x, y in (self.source_test_set(), self.test_set())]


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``images (1797, 8, 8)`` float32 in [0, 1] (pixels / 16) and ``labels (1797,)`` int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()  # bundled with scikit-learn: nothing is downloaded
    images, labels = (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


class DigitsTask(_PretrainedMLP):
    """8×8 digits, 10 classes: pretrained on the original images, adapted to transformed ones.

    ``pretrain_indices``, ``target_indices`` (the pool training sets are drawn from) and
    ``test_indices`` index ``sklearn.datasets.load_digits()``; they are disjoint and cover it.
    """

    name, config_class = "digits", DigitsConfig
    d_in, d_out, n_classes = 64, 10, 10

    def __init__(self, config: DigitsConfig | None = None):
        super().__init__(config)
        from sklearn.model_selection import train_test_split

        cfg = self.config
        self.images, self.labels = _digits_arrays()
        try:
            rest, test = train_test_split(np.arange(len(self.labels)), test_size=cfg.test_fraction,
                                          stratify=self.labels, random_state=cfg.seed)
            pretrain, target = train_test_split(rest, test_size=cfg.target_fraction,
                                                stratify=self.labels[rest], random_state=cfg.seed)
        except ValueError as err:
            raise InputError(f"test_fraction / target_fraction leave a split too small to stratify: {err}") from None
        self.pretrain_indices, self.target_indices, self.test_indices = pretrain, target, test
        self.max_n = len(target)
        self._transform, self._transform_text = DIGIT_TRANSFORMS[cfg.transform]

    def _data(self, indices: np.ndarray, transformed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        images = self._transform(self.images[indices]) if transformed else self.images[indices]
        x = torch.from_numpy(np.ascontiguousarray(images).reshape(len(indices), 64))  # (n, 64)
        return x, torch.from_numpy(self.labels[indices].copy())

    def train_indices(self, n: int, seed: int) -> np.ndarray:
        """The ``load_digits`` indices of ``train_set(n, seed)``: a seed's pool permutation, first n."""
        n, seed = self._check_draw(n, seed)
        return self.target_indices[_rng(seed, _TRAIN_X).permutation(self.max_n)[:n]]

    def _train_set(self, n: int, seed: int):
        return self._data(self.train_indices(n, seed))

    def test_set(self):
        return self._data(self.test_indices)

    def source_test_set(self):
        return self._data(self.test_indices, transformed=False)

    def pretrain_set(self):
        return self._data(self.pretrain_indices, transformed=False)

    def describe(self) -> str:
        cfg, (src, tgt) = self.config, self._accuracies()
        sizes = f"{len(self.pretrain_indices)} pretraining, {self.max_n} target training pool, {len(self.test_indices)}"
        return (f"digits: scikit-learn's 1,797 8x8 images (pixels / 16), split once, stratified (seed {cfg.seed}): "
                f"{sizes} test. Network 64-{cfg.hidden}-{cfg.hidden}-10 pretrained on the original images "
                f"({cfg.pretrain_steps} Adam steps). Target: {self._transform_text}. Pretrained test accuracy "
                f"{src:.1%} on the original images, {tgt:.1%} on the target.")


def teacher_logits(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits (n, C) of a teacher ``{fc1, fc2, head[, head_bias]}`` (float64 arrays) at x (n, d_in)."""
    hidden = np.maximum(np.maximum(x @ weights["fc1"].T, 0.0) @ weights["fc2"].T, 0.0)
    return hidden @ weights["head"].T + weights.get("head_bias", 0.0)


class TeacherTask(_PretrainedMLP):
    """x ~ N(0, I); labels = argmax of a random teacher MLP; the target teacher has a rank-k change.

    ``source_teacher`` / ``target_teacher``: float64 weights ``{fc1, fc2, head, head_bias}`` (for
    ``teacher_logits``); ``deltas``: the added matrices by layer name. Hidden layers have no bias;
    the head bias is minus the mean source logit on a calibration sample, which balances the classes.
    """

    name, config_class = "teacher", TeacherConfig

    def __init__(self, config: TeacherConfig | None = None):
        super().__init__(config)
        cfg = self.config
        self.d_in, self.d_out, self.n_classes, self.max_n = cfg.d_in, cfg.n_classes, cfg.n_classes, cfg.max_n
        rng, h = _rng(cfg.seed, _TEACHER), cfg.teacher_hidden
        source = {  # He-scaled Gaussian weights
            "fc1": rng.standard_normal((h, cfg.d_in)) * math.sqrt(2.0 / cfg.d_in),
            "fc2": rng.standard_normal((h, h)) * math.sqrt(2.0 / h),
            "head": rng.standard_normal((cfg.n_classes, h)) / math.sqrt(h),
        }
        calibration = _rng(cfg.seed, _CALIB).standard_normal((20_000, cfg.d_in))
        source["head_bias"] = -teacher_logits(source, calibration).mean(axis=0)
        self.deltas = {}
        for layer in cfg.delta_layers:
            w = source[layer]
            u, v = _orthonormal(rng, w.shape[0], cfg.delta_rank), _orthonormal(rng, w.shape[1], cfg.delta_rank)
            self.deltas[layer] = cfg.delta_scale * np.linalg.norm(w, 2) * (u @ v.T)  # (out, k) @ (k, in)
        self.source_teacher = source
        self.target_teacher = {k: w + self.deltas.get(k, 0.0) for k, w in source.items()}

    def _draw(self, n: int, seed: int, tag: int, target: bool = True):
        x = _rng(seed, tag).standard_normal((n, self.d_in))  # filled row by row: prefix-consistent
        y = teacher_logits(self.target_teacher if target else self.source_teacher, x).argmax(axis=1)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    def _train_set(self, n: int, seed: int):
        return self._draw(n, seed, _TRAIN_X)

    def test_set(self):
        return self._draw(self.config.test_size, self.config.seed, _TEST_X)

    def source_test_set(self):
        return self._draw(self.config.test_size, self.config.seed, _TEST_X, target=False)

    def pretrain_set(self):
        return self._draw(self.config.pretrain_samples, self.config.seed, _PRETRAIN, target=False)

    def describe(self) -> str:
        cfg, (src, tgt) = self.config, self._accuracies()
        changed = float((self.source_test_set()[1] != self.test_set()[1]).float().mean())
        return (f"teacher: x ~ N(0, I_{cfg.d_in}), labels = argmax of a random {cfg.d_in}-{cfg.teacher_hidden}-"
                f"{cfg.teacher_hidden}-{cfg.n_classes} ReLU teacher (seed {cfg.seed}); target: rank-{cfg.delta_rank} "
                f"change of {', '.join(cfg.delta_layers)} (singular values {cfg.delta_scale} x its spectral norm), "
                f"changing {changed:.1%} of the test labels. Student {cfg.hidden} wide, pretrained on "
                f"{cfg.pretrain_samples} source samples. Test: {cfg.test_size} fresh samples; training sets: fresh "
                f"draws per seed (n <= {cfg.max_n}). Pretrained test accuracy {src:.1%} source, {tgt:.1%} target.")


class LinregTask(Task):
    """THEORY §2: y = W_targ x + ε, x ~ N(0, Σ), ε ~ N(0, s² I); the network is one bias-free layer.

    Exposes read-only float64 arrays: ``w0`` (d_out, d_in), exactly the network's float32 weight;
    ``delta`` = W_targ − W0; ``w_target``; ``cov`` = Σ (d_in, d_in); ``cov_eigenvalues``; and
    ``noise_var`` = s² (a float). The task's mse is the mean over outputs: its population loss at
    W0 + BA is ``loss_scale`` · L(A, B), L = Tr[(Δ − BA) Σ (Δ − BA)ᵀ] + d_out s² as in THEORY §2.
    """

    name, loss_kind, config_class = "linreg", "mse", LinregConfig
    default_targets = ("layer",)
    n_classes = None

    def __init__(self, config: LinregConfig | None = None):
        super().__init__(config)
        cfg = self.config
        self.d_in, self.d_out, self.max_n = cfg.d_in, cfg.d_out, cfg.max_n
        self.loss_scale = 1.0 / cfg.d_out
        rng = _rng(cfg.seed, _TEACHER)
        w0 = rng.standard_normal((cfg.d_out, cfg.d_in)) * cfg.w0_scale / math.sqrt(cfg.d_in)
        self.w0 = w0.astype(np.float32).astype(np.float64)  # the network holds it exactly
        u, v = _orthonormal(rng, cfg.d_out, cfg.delta_rank), _orthonormal(rng, cfg.d_in, cfg.delta_rank)
        self.delta = cfg.delta_norm / math.sqrt(cfg.delta_rank) * (u @ v.T)  # (d_out, k) @ (k, d_in)
        self.w_target = self.w0 + self.delta
        if cfg.cov_eigenvalues is not None:
            eig = np.asarray(cfg.cov_eigenvalues, dtype=np.float64)
        else:
            eig = cfg.cov_decay ** np.arange(cfg.d_in, dtype=np.float64)
            eig *= cfg.d_in / eig.sum()
        basis = _orthonormal(rng, cfg.d_in, cfg.d_in) if cfg.cov_basis == "random" else np.eye(cfg.d_in)
        self.cov_eigenvalues, self.cov = eig, (basis * eig) @ basis.T  # R diag(λ) Rᵀ
        self._cov_sqrt = (basis * np.sqrt(eig)) @ basis.T  # symmetric square root of Σ
        self.noise_var = cfg.noise_std**2
        for array in (self.w0, self.delta, self.w_target, self.cov, self.cov_eigenvalues):
            array.flags.writeable = False

    def _factory(self) -> nn.Module:
        return nn.Sequential(OrderedDict(layer=nn.Linear(self.d_in, self.d_out, bias=False)))

    def base_model(self) -> nn.Module:
        return _build(self._factory, {"layer.weight": torch.from_numpy(self.w0.astype(np.float32))})

    def _draw(self, n: int, seed: int, x_tag: int, noise_tag: int, weight: np.ndarray):
        x = _rng(seed, x_tag).standard_normal((n, self.d_in)) @ self._cov_sqrt  # (n, d_in), Cov Σ
        noise = _rng(seed, noise_tag).standard_normal((n, self.d_out)) * self.config.noise_std
        y = x @ weight.T + noise  # (n, d_in) @ (d_in, d_out)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))

    def _train_set(self, n: int, seed: int):
        return self._draw(n, seed, _TRAIN_X, _TRAIN_NOISE, self.w_target)

    def test_set(self):
        return self._draw(self.config.test_size, self.config.seed, _TEST_X, _TEST_NOISE, self.w_target)

    def source_test_set(self):
        return self._draw(self.config.test_size, self.config.seed, _TEST_X, _TEST_NOISE, self.w0)

    def describe(self) -> str:
        cfg, eig = self.config, self.cov_eigenvalues
        start = float(np.trace(self.delta @ self.cov @ self.delta.T)) + cfg.d_out * self.noise_var
        return (f"linreg: y = (W0 + Δ) x + ε, rank Δ = {cfg.delta_rank}, ‖Δ‖_F = {cfg.delta_norm}, x ~ N(0, Σ) "
                f"in R^{cfg.d_in} (eigenvalues {eig.max():.3g} to {eig.min():.3g}, {cfg.cov_basis} basis), ε ~ "
                f"N(0, {self.noise_var:g} I_{cfg.d_out}). Loss: squared error averaged over outputs = L / {cfg.d_out}; "
                f"at W0, L = Tr[Δ Σ Δᵀ] + d_out s² = {start:.4g}. Test: {cfg.test_size} samples; training sets: "
                f"fresh draws per seed (n <= {cfg.max_n}).")


# ------------------------------------------------------------------------------------ registry
TASKS: dict[str, type[Task]] = {"digits": DigitsTask, "teacher": TeacherTask, "linreg": LinregTask}
DEFAULT_TASK = "digits"


def get_task(name: str = DEFAULT_TASK, config: TaskConfig | None = None, **overrides) -> Task:
    """The task ``name`` with ``config`` (default: the task's default config), ``overrides`` applied.

    Pretrained weights are cached in memory per config, so repeated calls pretrain once per process.
    """
    if name not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    cls = TASKS[name]
    if config is not None and not isinstance(config, cls.config_class):
        raise InputError(f"config for task {name!r} must be a {cls.config_class.__name__}, got {type(config).__name__}")
    if overrides:
        allowed = [f.name for f in fields(cls.config_class)]
        unknown = [key for key in overrides if key not in allowed]
        if unknown:
            raise InputError(f"{', '.join(unknown)}: not a setting of task {name!r}; allowed: {', '.join(allowed)}")
        config = cls.config_class(**{**({} if config is None else asdict(config)), **overrides})
    return cls(config)


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)
