"""The task interface and what the tasks share: configs, the MLP, pretraining and its cache.

``Task`` is the interface (see the package docstring); ``TaskConfig`` validates a task's settings;
``mlp`` builds the ``fc1 -> ReLU -> fc2 -> ReLU -> head`` network of the classification tasks, which
``PretrainedMLP`` pretrains once per config and process (``clear_pretrain_cache`` forgets it).

Pretrained weights are also kept on disk, so a new process (a sweep's worker, the next run) loads
them instead of pretraining again: ``pretrain_cache_dir()`` is ``$INFOBOUND_CACHE/pretrained`` when
that variable is set (``off`` turns the disk cache off), else ``$XDG_CACHE_HOME/infobound/pretrained``
or ``~/.cache/infobound/pretrained``. A file is named by a sha256 of the task class, the repr of the
config the weights depend on and torch's version; it holds the state dict and the seconds the
pretraining took. A file that does not load is trained again and overwritten; a folder that cannot
be written only means no disk cache. The key does not see the code: after changing a network or its
pretraining, delete the folder. ``pretrain_info(config)`` says how long the pretraining took and
whether this process loaded it from disk.

No global RNG is touched: numpy draws use ``np.random.default_rng([seed, stream tag])``, one tag per
purpose; torch initialisation runs inside ``torch.random.fork_rng``; minibatches use a
``torch.Generator``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from ...validation import check_choice, check_int, check_real

# Stream tags: a numpy Generator is seeded with [seed, tag], so no two purposes share a stream.
(STREAM_TEACHER, STREAM_CALIB, STREAM_PRETRAIN, STREAM_TRAIN_X, STREAM_TRAIN_NOISE, STREAM_TEST_X, STREAM_TEST_NOISE,
 STREAM_SUPERSAMPLE, STREAM_MASK, STREAM_RESPLIT) = range(1, 11)


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
                low, high, open_low = (list(args) + [None, False])[:3]
                self._set(name, check_real(name, value, low, high, open_low=open_low))
            else:
                check_choice(name, value, *args)

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)


# ------------------------------------------------------------------------------------- helpers
def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """``fc1 -> ReLU -> fc2 -> ReLU -> head``, initialised from the global torch RNG (fork it)."""
    return nn.Sequential(OrderedDict(
        fc1=nn.Linear(d_in, hidden), act1=nn.ReLU(),
        fc2=nn.Linear(hidden, hidden), act2=nn.ReLU(),
        head=nn.Linear(hidden, d_out),
    ))  # fmt: skip


def build_pretrained(factory, state: dict[str, torch.Tensor]) -> nn.Module:
    """``factory()`` with ``state`` loaded (copied: every model owns its tensors); global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        model = factory()
    model.load_state_dict(state)
    return model


def pretrain(factory, x: torch.Tensor, y: torch.Tensor, seed: int, steps: int, lr: float,
              batch_size: int, weight_decay: float = 0.0, augment=None, cosine: bool = False) -> dict[str, torch.Tensor]:
    """Adam on cross-entropy, minibatches drawn with replacement; deterministic in ``seed``. One intra-op
    thread (restored after): the nets are tiny, more threads only contend and reorder float reductions.

    Options (the defaults leave the plain loop above, draw for draw): ``weight_decay`` > 0 uses AdamW;
    ``augment(batch, generator)`` transforms each minibatch, drawing from the minibatch generator;
    ``cosine`` decays the learning rate from ``lr`` to 0 along a half cosine over the steps."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    batches = torch.Generator().manual_seed(seed)
    if weight_decay:
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():  # also when the caller runs under torch.no_grad()
            for step in range(steps):
                idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=batches)
                xb = x[idx] if augment is None else augment(x[idx], batches)
                loss = F.cross_entropy(model(xb), y[idx])
                optimiser.zero_grad()
                loss.backward()
                if cosine:
                    for group in optimiser.param_groups:
                        group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


_STATES: dict[TaskConfig, dict[str, torch.Tensor]] = {}  # pretrained weights by config, in memory
_INFO: dict[TaskConfig, PretrainInfo] = {}
_STATES_LOCK = threading.Lock()

CACHE_ENV = "INFOBOUND_CACHE"
"""The environment variable naming the disk cache's folder (``off``: no disk cache)."""
_CACHE_FORMAT = 1  # part of every file name: a new layout of the files never reads an old one


@dataclass(frozen=True)
class PretrainInfo:
    """How a config's pretrained weights came to this process."""

    seconds: float
    """Wall-clock seconds the pretraining took when it ran (in this process or the one that cached it)."""
    from_cache: bool
    """Whether this process loaded the weights from the disk cache instead of training them."""
    path: str | None
    """The cache file, None when the weights are not on disk (cache off or not writable)."""
    pid: int = dataclasses.field(default_factory=os.getpid)
    """The process that trained or loaded them: a forked worker (``sweep.process_pool``) inherits
    its parent's weights and this record of them, and did neither itself."""


def pretrain_cache_dir() -> Path | None:
    """The folder of the disk cache of pretrained weights, None when ``$INFOBOUND_CACHE`` is ``off``
    (or no home folder is known). Read from the environment on every call."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser() / "pretrained"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    try:
        root = Path(xdg) if xdg else Path.home() / ".cache"
    except RuntimeError:  # no home folder
        return None
    return root / "infobound" / "pretrained"


def pretrain_info(config: TaskConfig) -> PretrainInfo | None:
    """Seconds and source of the pretrained weights of ``config`` (a task's ``pretrain_key()``) in this
    process; None before they were first needed (or after ``clear_pretrain_cache``)."""
    with _STATES_LOCK:
        return _INFO.get(config)


def clear_pretrain_cache(config: TaskConfig | None = None) -> None:
    """Forget the pretrained weights of ``config`` (default: of every config) in this process's memory;
    they are loaded from the disk cache again, or trained where it has none. The disk cache is
    separate: delete ``pretrain_cache_dir()`` (or set ``INFOBOUND_CACHE=off``) to pretrain afresh."""
    with _STATES_LOCK:
        for key in [config] if config is not None else list(_STATES):
            _STATES.pop(key, None)
            _INFO.pop(key, None)


def _cache_file(task: str, config: TaskConfig) -> Path | None:
    folder = pretrain_cache_dir()
    if folder is None:
        return None
    key = "\n".join((f"format {_CACHE_FORMAT}", task, repr(config), f"torch {torch.__version__}"))
    return folder / f"{task}-{hashlib.sha256(key.encode()).hexdigest()[:40]}.pt"


def _load_cached(path: Path, task: str, config: TaskConfig) -> tuple[dict[str, torch.Tensor], float] | None:
    """The state and seconds stored at ``path``; None when there is no file or it does not load or
    does not hold what its name promises."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        state, seconds = blob["state"], float(blob["seconds"])
        if (blob["format"], blob["task"], blob["config"], blob["torch"]) != (
                _CACHE_FORMAT, task, repr(config), str(torch.__version__)):
            return None
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            return None
        return state, seconds
    except Exception:  # noqa: BLE001 -- absent, truncated, corrupt, written by something else: train again
        return None


def _save_cached(path: Path, task: str, config: TaskConfig, state: dict[str, torch.Tensor], seconds: float) -> bool:
    """Write atomically (a temporary file in the same folder, then ``os.replace``); False when the
    folder cannot be written."""
    blob = {"format": _CACHE_FORMAT, "task": task, "config": repr(config), "torch": str(torch.__version__),
            "seconds": float(seconds), "state": state}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
        os.replace(tmp, path)
        return True
    except (OSError, RuntimeError):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def cached_state(config: TaskConfig, train, task: str | None = None) -> dict[str, torch.Tensor]:
    """The pretrained weights for ``config``: from memory, else from the disk cache, else ``train()``
    (once per process, then written to the disk cache). ``task`` names the task in the cache file's
    key (default: the config's class name)."""
    with _STATES_LOCK:
        if config in _STATES:
            return _STATES[config]
    task = type(config).__name__ if task is None else task
    path = _cache_file(task, config)
    loaded = None if path is None else _load_cached(path, task, config)
    if loaded is not None:
        state, seconds = loaded
        info = PretrainInfo(seconds, True, str(path))
    else:
        start = time.perf_counter()
        state = train()
        seconds = time.perf_counter() - start
        saved = path is not None and _save_cached(path, task, config, state, seconds)
        info = PretrainInfo(seconds, False, str(path) if saved else None)
    with _STATES_LOCK:
        if config not in _STATES:
            _STATES[config], _INFO[config] = state, info
        return _STATES[config]


def stream_rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng(list(entropy))


def random_orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
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
        """The task and its split, in words, for the report; it ends with ``prior_statement``."""

    shift_setting: ClassVar[str | None] = None
    """The config field a task name ``NAME:VALUE`` sets (``digits:flip``, ``mnist:permute``); None
    for a task without a shift setting."""

    @property
    def shift_side(self) -> str | None:
        """Where the target differs from the source: ``"input"`` (what the layers read), ``"output"``
        (what the network writes), or None when neither describes it."""
        return None

    tokens_per_example: int = 1
    """Positions each linear layer is applied to per example (a ViT: patches + class token), for the
    sweep's FLOP estimate."""
    default_batch_size: int | None = None
    """Fine-tuning minibatch size a sweep uses when it sets none (None: full batch)."""

    model_setting: ClassVar[str | None] = None
    """The config field a task name ``NAME/VALUE`` sets (``mnist/vit``); None for a task with one network."""

    prior_statement: ClassVar[str] = ""
    """Why the pretrained network may be part of a certificate's prior: it never saw the fine-tuning
    data (THEORY §4, transfer). Empty for a task that makes no such guarantee."""

    max_pairs: int = 0
    """The most pairs a supersample can hold (0: the task has no supersamples)."""

    resplits: ClassVar[bool] = False
    """Whether ``resplit`` can draw a seed its own training and test sets (split ``per_seed``)."""

    def resplit(self, n: int, seed: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Seed ``seed``'s own split: ``(train_set, test_set)``, n training examples and a test set of
        the fixed test set's size, disjoint, both from the data the network never pretrained on;
        deterministic in ``(n, seed)``, the training set prefix-consistent in n."""
        raise InputError(f"task {self.name!r} cannot redraw its split per seed (split 'per_seed' needs a task "
                         f"with one fixed pool of examples: digits, mnist); use split 'fixed'")

    def supersample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs of target examples ``(x (n, 2, d_in), y (n, 2))``, distinct, never pretrained on;
        deterministic in ``(n, seed)`` (THEORY §5: the supersample Z̃)."""
        if self.max_pairs == 0:
            raise self._no_supersamples()
        n = check_int("n", n, 1)
        if n > self.max_pairs:
            raise InputError(f"n must be an integer in [1, {self.max_pairs}] (the pairs a supersample of task "
                             f"{self.name!r} can hold), got {n}")
        x, y = self._supersample(n, check_int("seed", seed, 0))
        return x.reshape(n, 2, *x.shape[1:]), y.reshape(n, 2, *y.shape[1:])

    def _supersample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """2n distinct examples, pair i being rows 2i and 2i + 1; a task with ``max_pairs`` > 0 draws
        them, the others refuse here."""
        raise self._no_supersamples()

    def _no_supersamples(self) -> InputError:
        return InputError(f"task {self.name!r} has no supersamples (its loss is {self.loss_kind}; the "
                          f"supersample bounds need a loss in [0, 1])")


class PretrainedMLP(Task):
    """A classification task whose network is ``mlp(d_in, hidden, n_classes)`` pretrained on a source set."""

    loss_kind = "zero_one"
    default_targets = ("fc1", "fc2")  # the head stays frozen, so d_train is the adapter's alone

    @abstractmethod
    def pretrain_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The source examples the network is pretrained on."""

    def architecture(self) -> nn.Module:
        """The network with fresh, untrained weights (initialised from torch's global RNG: fork it),
        for its shapes and layer order without pretraining."""
        return mlp(self.d_in, self.config.hidden, self.n_classes)

    def pretrain_key(self) -> TaskConfig:
        """The settings the pretrained weights depend on (the cache key): by default the whole config."""
        return self.config

    def base_model(self) -> nn.Module:
        cfg = self.config
        train = lambda: pretrain(self.architecture, *self.pretrain_set(), cfg.seed,  # noqa: E731
                                  cfg.pretrain_steps, cfg.pretrain_lr, cfg.batch_size)
        return build_pretrained(self.architecture, cached_state(self.pretrain_key(), train, type(self).__name__))

    def _accuracies(self) -> list[float]:
        """The pretrained network's test accuracy on the source labels and on the target task."""
        model = self.base_model()
        with torch.no_grad():
            return [float((model(x).argmax(-1) == y).float().mean()) for x, y in (self.source_test_set(), self.test_set())]


class SplitTask(PretrainedMLP):
    """A classification task on one fixed set of examples, split once into ``pretrain_indices``,
    ``target_indices`` (the pool training sets are drawn from) and ``test_indices``; the subclass
    gives ``_data(indices, target=True)``: the examples at ``indices``, shifted for the target task."""

    target_indices: np.ndarray
    test_indices: np.ndarray

    @abstractmethod
    def _data(self, indices: np.ndarray, target: bool = True) -> tuple[torch.Tensor, torch.Tensor]: ...

    def train_indices(self, n: int, seed: int) -> np.ndarray:
        """The example indices of ``train_set(n, seed)``: a seed's pool permutation, first n."""
        n, seed = self._check_draw(n, seed)
        return self.target_indices[stream_rng(seed, STREAM_TRAIN_X).permutation(self.max_n)[:n]]

    def _train_set(self, n: int, seed: int):
        return self._data(self.train_indices(n, seed))

    resplits = True

    def resplit(self, n: int, seed: int):
        """The target pool and the test set together, permuted by the seed: the first ``len(test_indices)``
        are the seed's test set, the next n its training set (so n can reach ``max_n``)."""
        n, seed = self._check_draw(n, seed)
        pool = np.concatenate([self.target_indices, self.test_indices])
        order = pool[stream_rng(seed, STREAM_RESPLIT).permutation(len(pool))]
        m = len(self.test_indices)
        return self._data(order[m:m + n]), self._data(order[:m])

    def _supersample(self, n: int, seed: int):
        """2n examples from the target pool and the test set: never the pretraining ones."""
        pool = np.concatenate([self.target_indices, self.test_indices])
        return self._data(pool[stream_rng(seed, STREAM_SUPERSAMPLE).permutation(len(pool))[:2 * n]])

    def test_set(self):
        return self._data(self.test_indices)
