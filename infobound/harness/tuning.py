"""Choosing the learning rate and the number of steps on a validation split, at a price in bits.

A sweep group (one task, mode, rank, n; K stacked replicas) may pick its learning rate and step count
from a small grid ``Candidates``. ``select`` holds out the last ``n_val`` examples of each replica's
own training set (training sets are random draws, so these are a random subset of them), trains on
the first ``n_fit`` with every candidate and keeps the one with the lowest mean validation criterion.
The test set never enters: ``select`` only ever sees the training tensors.

Price. The chosen candidate depends on the training data of every replica, so the adapter is no
longer a fixed algorithm's output; but it is the output of one of ``size`` fixed algorithms, and an
index into ``Candidates.pairs()`` names it in ``log2(size)`` bits whatever it depends on (a union
bound over the candidates, or I(W; S) <= I(W; S | index) + H(index)). Every bound of the group adds
``Selection.bits`` to the information it charges; one candidate costs 0 bits.

Cost. One training run of ``max(steps)`` steps per learning rate: the step counts of one learning
rate are points on one trajectory (Adam has no schedule), evaluated through ``train_stacked``'s
``progress`` callback as the run passes them, never by restarting training (a new optimizer and a
restarted minibatch stream would be a different trajectory). The evaluations run under
``torch.no_grad`` in eval mode and touch neither the parameters, the optimizer nor the minibatch
stream, so the value at ``s`` steps is that of a run of exactly ``s`` steps.

Criterion (one choice per group: stacked replicas share the learning rate and the steps). Loss
``cross_entropy``: the validation 0-1 error averaged over replicas (counted exactly, as the number of
wrong predictions over all K·n_val validation examples); ties go to the lower mean validation
cross-entropy, then the smaller learning rate, then the fewer steps. Loss ``mse``: the mean
validation loss over replicas, ties to the smaller learning rate, then the fewer steps. A
non-finite validation loss (a diverged run, whose NaN logits may still predict some labels right)
ranks after every finite one, whatever its error (``best_index``).

``select`` only chooses; the caller trains its model with the chosen ``lr`` and ``steps`` (on all n
training examples, as without tuning) and adds ``bits`` to its bounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..validation import check_int, check_real, describe, is_number
from .train import Loss, evaluate_stacked, train_stacked

__all__ = [
    "MAX_TUNE_STEPS",
    "Candidates",
    "Selection",
    "best_index",
    "parse_lrs",
    "parse_steps",
    "select",
    "validation_split",
]

MAX_TUNE_STEPS = 10_000_000
"""Largest step count a candidate may hold (the sweep's limit on steps)."""


# ------------------------------------------------------------------------------------ the grid
def _lr_item(name: str, value) -> float:
    return check_real(name, value, 0.0, None, open_low=True)


def _steps_item(name: str, value) -> int:
    return check_int(name, value, 1, MAX_TUNE_STEPS)


def _values(name: str, value, item, what: str) -> tuple:
    """Sorted distinct values checked by ``item``: one number, an iterable, or comma-separated text."""
    if isinstance(value, str):
        raw = [v.strip() for v in value.split(",") if v.strip()]
        parsed = []
        for text in raw:
            try:
                parsed.append(float(text) if item is _lr_item else _int_text(text))
            except ValueError:
                raise InputError(f"{name} must be {what} separated by commas, got {text!r} in {value!r}") from None
        raw = parsed
    elif is_number(value):
        raw = [value]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        raw = list(value)
    else:
        raise InputError(f"{name} must be {what}: a number, a list of numbers or comma-separated text, "
                         f"got {describe(value)}")
    if not raw:
        raise InputError(f"{name} must hold at least one value, got {describe(value)}")
    return tuple(sorted({item(name, v) for v in raw}))


def _int_text(text: str) -> int | float:
    """An integer written as ``200``, ``2e3`` or ``2000.0`` (check_int refuses fractions)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_lrs(text, name: str = "--tune-lrs") -> tuple[float, ...]:
    """Learning-rate candidates from CLI text (``"3e-3,1e-2,3e-2"``): sorted, duplicates removed."""
    return _values(name, text, _lr_item, "learning rates (finite numbers > 0)")


def parse_steps(text, name: str = "--tune-steps") -> tuple[int, ...]:
    """Step-count candidates from CLI text (``"100,300,1000"``): sorted, duplicates removed."""
    return _values(name, text, _steps_item, f"step counts (integers in [1, {MAX_TUNE_STEPS:,}])")


@dataclass(frozen=True)
class Candidates:
    """The grid of (learning rate, steps) pairs a group chooses from, and the validation share.

    ``lrs`` and ``steps`` are stored sorted with duplicates removed; a single number, any iterable or
    comma-separated text is accepted for either. ``validation_fraction`` of each replica's training
    examples (rounded, at least one) is held out for the choice (``validation_split``).
    """

    lrs: tuple[float, ...]
    steps: tuple[int, ...]
    validation_fraction: float = 0.2

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("lrs", _values("lr candidates", self.lrs, _lr_item, "learning rates (finite numbers > 0)"))
        set_("steps", _values("steps candidates", self.steps, _steps_item,
                              f"step counts (integers in [1, {MAX_TUNE_STEPS:,}])"))
        set_("validation_fraction", check_real("validation_fraction", self.validation_fraction, 0.0, 1.0,
                                               open_low=True, open_high=True))

    @property
    def size(self) -> int:
        """The number of candidates, ``len(lrs) * len(steps)``."""
        return len(self.lrs) * len(self.steps)

    @property
    def bits(self) -> float:
        """``log2(size)``: the length of the code naming the chosen candidate (0.0 for one)."""
        return 0.0 if self.size == 1 else math.log2(self.size)

    @property
    def max_steps(self) -> int:
        return self.steps[-1]

    @property
    def total_steps(self) -> int:
        """Training steps ``select`` runs: ``max(steps)`` per learning rate (a progress bar's total)."""
        return len(self.lrs) * self.max_steps

    def pairs(self) -> list[tuple[float, int]]:
        """Every ``(lr, steps)``, learning rate major: index ``i * len(steps) + j`` is ``(lrs[i], steps[j])``."""
        return [(lr, s) for lr in self.lrs for s in self.steps]


def grid_text(values) -> str:
    """Values as comma-separated text, floats by ``repr`` (read back exactly by ``float``)."""
    return ",".join(repr(float(v)) if isinstance(v, float) else str(v) for v in values)


def validation_split(n: int, fraction: float) -> tuple[int, int]:
    """``(n_fit, n_val)`` for n training examples: ``n_val = max(1, round(fraction * n))`` (halves
    round up), ``n_fit = n - n_val``; both must be at least 1."""
    fraction = check_real("validation_fraction", fraction, 0.0, 1.0, open_low=True, open_high=True)
    n = check_int("n (training examples per replica)", n, 0)
    n_fit, n_val = _split(n, fraction)
    if n_fit < 1:
        raise InputError(f"n (training examples per replica) = {n} is too small to hold out a validation "
                         f"fraction of {fraction:g} and keep examples to fit on: n_val = {n_val}, n_fit = {n_fit}; "
                         f"n must be at least {_smallest_n(fraction)} for this fraction")
    return n_fit, n_val


def _split(n: int, fraction: float) -> tuple[int, int]:
    n_val = max(1, math.floor(fraction * n + 0.5))
    return n - n_val, n_val


def _smallest_n(fraction: float) -> int:
    """The smallest n with n_fit >= 1: round(f n) <= n - 1 holds from n > 0.5 / (1 - f) on."""
    n = max(2, math.floor(0.5 / (1.0 - fraction)) + 1)
    while _split(n, fraction)[0] < 1:  # float rounding at the edge
        n += 1
    while n > 2 and _split(n - 1, fraction)[0] >= 1:
        n -= 1
    return n


# ------------------------------------------------------------------------------------ the choice
@dataclass(frozen=True, eq=False)
class Selection:
    """What ``select`` chose and what it saw; ``index`` points into ``candidates.pairs()`` (the arrays
    are read-only; a selection compares by identity)."""

    lr: float
    steps: int
    index: int
    candidates: Candidates
    n_fit: int
    n_val: int
    validation_errors: np.ndarray = field(repr=False)
    """(size,) mean validation 0-1 error over replicas per candidate (NaN for mse)."""
    validation_losses: np.ndarray = field(repr=False)
    """(size,) mean validation loss (cross-entropy or MSE) over replicas per candidate."""
    bits: float
    """``candidates.bits``: what every bound of the group adds to the information it charges."""
    seconds: float
    """Wall-clock time of the selection (not part of any deterministic output)."""

    def as_record(self) -> dict:
        """Flat JSON scalars (what a store record holds), every field prefixed ``tune_``.

        The grids and the per-candidate values are comma-separated text in ``pairs()`` order (floats
        by ``repr``, so ``parse_lrs`` / ``parse_steps`` / ``float`` read them back exactly; NaN as
        ``nan``); ``as_arrays`` gives the same values as numpy arrays.
        """
        join = grid_text
        return {
            "tune_lr": float(self.lr),
            "tune_steps": int(self.steps),
            "tune_candidates": int(self.candidates.size),
            "tune_bits": float(self.bits),
            "tune_n_fit": int(self.n_fit),
            "tune_n_val": int(self.n_val),
            "tune_lrs": join(self.candidates.lrs),
            "tune_steps_grid": join(self.candidates.steps),
            "tune_validation_errors": join(float(v) for v in self.validation_errors),
            "tune_validation_losses": join(float(v) for v in self.validation_losses),
        }

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The grids and per-candidate values as numpy arrays (for a record's stored arrays)."""
        return {
            "tune_lrs": np.asarray(self.candidates.lrs, dtype=np.float64),
            "tune_steps_grid": np.asarray(self.candidates.steps, dtype=np.int64),
            "tune_validation_errors": np.asarray(self.validation_errors, dtype=np.float64).copy(),
            "tune_validation_losses": np.asarray(self.validation_losses, dtype=np.float64).copy(),
        }


def select(
    build_model: Callable[[], nn.Module],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    candidates: Candidates,
    *,
    loss: Loss | str,
    seed: int,
    batch_size: int | None = None,
    progress: Callable[[int], object] | None = None,
    eval_batch_size: int | None = None,
) -> Selection:
    """Choose one (lr, steps) of ``candidates`` for the K stacked replicas on held-out training data.

    ``build_model()`` must return a fresh stacked model each call (the base model with LoRA injected,
    ``stack=K``, frozen factors drawn from the replicas' seeds); it is called once per learning rate.
    ``x_train`` (K, n, d) and ``y_train`` (K, n) int64 labels or (K, n[, d_out]) float targets are the
    replicas' training sets only: replica k validates on its last ``n_val`` examples and fits on the
    first ``n_fit`` (``validation_split(n, candidates.validation_fraction)``). ``seed`` seeds the
    minibatch stream as in ``train_stacked``; ``batch_size`` None or at least ``n_fit`` trains full
    batch. ``progress(i)`` is called after every training step, i counting steps over all
    candidates from 0 up to ``candidates.total_steps - 1``. ``eval_batch_size`` evaluates the
    validation part in chunks of that many examples (less memory; None: all at once).
    """
    start = time.perf_counter()
    if isinstance(build_model, nn.Module) or not callable(build_model):
        got = f"a model ({type(build_model).__name__})" if isinstance(build_model, nn.Module) else describe(build_model)
        raise InputError(f"build_model must be a callable returning a fresh stacked model (one per learning "
                         f"rate), got {got}")
    if not isinstance(candidates, Candidates):
        raise InputError(f"candidates must be a Candidates (learning rates and step counts), got {describe(candidates)}")
    loss = Loss.parse(loss)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be a callable taking the step number, or None, got {describe(progress)}")
    x, y = _check_training(x_train, y_train, loss)
    k, n = int(x.shape[0]), int(x.shape[1])
    n_fit, n_val = validation_split(n, candidates.validation_fraction)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1)
        if batch_size >= n_fit:
            batch_size = None  # the whole fit part, as a group whose batch reaches n trains full batch
    if eval_batch_size is not None:
        eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1)
    x_fit, y_fit, x_val, y_val = x[:, :n_fit], y[:, :n_fit], x[:, n_fit:], y[:, n_fit:]

    wanted = {s: j for j, s in enumerate(candidates.steps)}
    size, n_steps = candidates.size, len(candidates.steps)
    wrong = np.zeros(size, dtype=np.int64)  # wrong validation predictions over all K replicas
    losses = np.full(size, np.nan)
    done = 0
    for i, lr in enumerate(candidates.lrs):
        model = build_model()
        if not isinstance(model, nn.Module):
            raise InputError(f"build_model must return a torch.nn.Module, got {describe(model)}")
        seen = []

        def at_step(step: int, i=i, model=model, seen=seen) -> None:
            nonlocal done
            j = wanted.get(step + 1)
            if j is not None:
                metrics = evaluate_stacked(model, x_val, y_val, loss=loss, batch_size=eval_batch_size)
                losses[i * n_steps + j] = float(metrics["loss"].mean())
                if loss is Loss.CROSS_ENTROPY:
                    wrong[i * n_steps + j] = int(metrics["zero_one"].sum(dtype=np.int64))
                seen.append(j)
            if progress is not None:
                progress(done)
            done += 1

        train_stacked(model, x_fit, y_fit, steps=candidates.max_steps, lr=lr, batch_size=batch_size,
                      loss=loss, seed=seed, progress=at_step)
        if len(seen) != n_steps:  # cannot happen: the callback runs after every step
            raise RuntimeError(f"evaluated {len(seen)} of {n_steps} step counts for lr {lr!r}")

    errors = wrong / float(k * n_val) if loss is Loss.CROSS_ENTROPY else np.full(size, np.nan)
    index = best_index(wrong if loss is Loss.CROSS_ENTROPY else None, losses)
    lr, steps = candidates.pairs()[index]
    errors.setflags(write=False)
    losses.setflags(write=False)
    return Selection(lr=lr, steps=steps, index=index, candidates=candidates, n_fit=n_fit, n_val=n_val,
                     validation_errors=errors, validation_losses=losses, bits=candidates.bits,
                     seconds=time.perf_counter() - start)


def best_index(wrong: np.ndarray | None, losses: np.ndarray) -> int:
    """The chosen index into ``pairs()`` by the module's rule: a non-finite loss last, then the fewest
    ``wrong`` validation predictions (None for mse), then the lowest loss, then the lowest index
    (the smaller learning rate, then the fewer steps)."""
    def key(c: int):
        value = float(losses[c])
        finite = math.isfinite(value)
        return (not finite, 0 if wrong is None else int(wrong[c]), value if finite else 0.0, c)

    return min(range(len(losses)), key=key)


def _check_training(x_train, y_train, loss: Loss) -> tuple[torch.Tensor, torch.Tensor]:
    """The replicas' training tensors, shapes checked against each other (the model checks the rest)."""
    if not isinstance(x_train, torch.Tensor) or x_train.dim() != 3 or not x_train.is_floating_point():
        got = f"{x_train.dtype} {tuple(x_train.shape)}" if isinstance(x_train, torch.Tensor) else describe(x_train)
        raise InputError(f"x_train must be a float tensor of shape (K, n, d): each replica's training inputs, got {got}")
    k, n = (int(s) for s in x_train.shape[:2])
    if not isinstance(y_train, torch.Tensor):
        raise InputError(f"y_train must be a tensor whose first two dimensions are (K, n) = ({k}, {n}), "
                         f"got {describe(y_train)}")
    if loss is Loss.CROSS_ENTROPY:
        if y_train.dtype != torch.int64 or tuple(y_train.shape) != (k, n):
            raise InputError(f"y_train must be an int64 tensor of class labels of shape (K, n) = ({k}, {n}) "
                             f"like x_train, got {y_train.dtype} {tuple(y_train.shape)}")
    else:
        if not y_train.is_floating_point() or y_train.dim() not in (2, 3) or tuple(y_train.shape[:2]) != (k, n):
            raise InputError(f"y_train must be a float tensor of targets of shape (K, n, d_out) with (K, n) = "
                             f"({k}, {n}) like x_train, got {y_train.dtype} {tuple(y_train.shape)}")
    if k < 1:
        raise InputError(f"x_train must hold at least one replica, got shape {tuple(x_train.shape)}")
    return x_train, y_train
