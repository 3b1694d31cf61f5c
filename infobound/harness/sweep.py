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

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError, check_int
from ..presets import select_layers
from ..spec import AdapterSpec, LayerSpec, Mode

RANKLESS = 0  # the rank recorded for full fine-tuning, where no rank applies


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
    clip: float = 4.0
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("modes", _nonempty("modes", tuple(Mode.parse(m) for m in self.modes)))
        set_("ranks", _nonempty("ranks", tuple(check_int("ranks", r, 1) for r in self.ranks)))
        set_("ns", _nonempty("n", tuple(check_int("n", n, 1) for n in self.ns)))
        set_("seeds", check_int("seeds", self.seeds, 1))
        bits = tuple(None if b is None else check_int("bits", b, 1, 64) for b in self.bits)
        set_("bits", _nonempty("bits", bits))
        set_("steps", check_int("steps", self.steps, 1))
        for name in ("lr", "clip") + (("alpha",) if self.alpha is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise InputError(f"{name} must be a finite number > 0, got {value!r}")
        if self.targets is not None:
            set_("targets", _nonempty("targets", tuple(self.targets)))

    def groups(self) -> list["GroupConfig"]:
        """Every unit of work, in a stable order; full fine-tuning once per n (rank does not apply)."""
        out = []
        for mode in self.modes:
            ranks = (RANKLESS,) if mode is Mode.FULL else self.ranks
            for rank in ranks:
                for n in self.ns:
                    out.append(GroupConfig(
                        task=self.task, mode=mode, rank=rank, n=n, seeds=tuple(range(self.seeds)),
                        bits=self.bits, alpha=self.alpha, init=self.init, steps=self.steps, lr=self.lr,
                        clip=self.clip, targets=self.targets,
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

    def run_config(self, seed: int, bits: int | None) -> dict:
        """The config that identifies one record (its store key is a hash of this)."""
        config = {k: v for k, v in asdict(self).items() if k not in ("seeds", "bits")}
        config.update(mode=self.mode.value, seed=seed, bits=bits,
                      targets=None if self.targets is None else list(self.targets))
        return config

    def keys(self) -> list[str]:
        from .store import config_key

        return [config_key(self.run_config(s, b)) for s in self.seeds for b in self.bits]


def run_group(group: GroupConfig, progress: Callable[[int], None] | None = None) -> list[dict]:
    """Train the group's stack, evaluate every replica at every bit width; one record per (seed, bits)."""
    return _run_group(group, progress)


def _run_group(group: GroupConfig, progress: Callable[[int], None] | None) -> list[dict]:
    import torch

    from ..bounds import DEFAULT_SIGMA, seed_bound
    from ..lora import inject_lora, spec_from_model
    from ..quantize import UniformGrid, quantize_trainable_
    from .closed_forms import linreg_losses
    from .tasks import get_task
    from .train import evaluate_stacked, train_stacked

    t0 = time.perf_counter()
    task = get_task(group.task)
    targets = group.targets or task.default_targets
    seeds = list(group.seeds)
    k = len(seeds)

    model = task.base_model()
    layers = select_layers(linear_layers(model), targets, model=group.task)  # the bound's side
    rank = 1 if group.mode is Mode.FULL else group.rank
    inject_lora(model, targets, rank, mode=group.mode, alpha=group.alpha, init=group.init,
                stack=k, seeds=[_frozen_seed(s) for s in seeds])
    train = [task.train_set(group.n, seed=s) for s in seeds]
    x_train = torch.stack([torch.as_tensor(x) for x, _ in train])  # (K, n, d_in)
    y_train = torch.stack([torch.as_tensor(y) for _, y in train])  # (K, n) or (K, n, d_out)
    x_test, y_test = (torch.as_tensor(a) for a in task.test_set())
    x_test = x_test.expand(k, *x_test.shape)  # (K, m, d_in), a view
    y_test = y_test.expand(k, *y_test.shape)

    train_stacked(model, x_train, y_train, steps=group.steps, lr=group.lr, loss=_loss(task),
                  seed=seeds[0], progress=progress)
    trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    records = []
    for bits in group.bits:
        quantised = None
        if bits is not None:
            quantised = quantize_trainable_(model, UniformGrid(bits, group.clip))
        measured = {"train": evaluate_stacked(model, x_train, y_train, loss=_loss(task)),
                    "test": evaluate_stacked(model, x_test, y_test, loss=_loss(task))}
        spec = spec_from_model(model, bits=bits or 64)
        expected = AdapterSpec(layers, rank=rank, mode=group.mode, bits=bits or 64)
        if spec.factor_totals() != expected.factor_totals() or spec.trainable_params != expected.trainable_params:
            raise RuntimeError(f"the trained model's spec {spec} differs from the bound's {expected}")
        applicable = bits is not None and task.loss_kind == "zero_one"
        sb = seed_bound(spec, group.n, sigma=DEFAULT_SIGMA, bits=bits or 64) if applicable else None
        closed = linreg_losses(task, model, group.mode) if task.name == "linreg" else {}
        for i, seed in enumerate(seeds):
            record = _record(group, task, seed, bits, measured, i, spec.trainable_params, sb, quantised,
                             test_n=int(x_test.shape[1]))
            record.update({name: values[i] for name, values in closed.items()})
            records.append(record)
        with torch.no_grad():  # back to the unquantised trained values for the next bit width
            for name, p in model.named_parameters():
                if name in trained:
                    p.copy_(trained[name])
    per_run = (time.perf_counter() - t0) / k
    for record in records:
        record["wall_time"] = per_run
    return records


def _record(group, task, seed, bits, measured, i, trainable, sb, quantised, test_n) -> dict:
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
        "clipped_fraction": None if quantised is None else float(quantised.fraction_clipped),
        "test_n": test_n,
        "versions": versions(),
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
    todo = [g for g in groups if store.missing(g.keys())]
    counts = {"groups": len(groups), "skipped": len(groups) - len(todo), "written": 0}
    mapper = map if executor is None else executor.map
    bar = tqdm(total=len(todo), desc=f"{config.task} sweep", unit="group", disable=not progress)
    for group, records in zip(todo, mapper(run_group, todo)):
        counts["written"] += store.put_many(
            (r["key"], {k: v for k, v in r.items() if k != "key"}, group.run_config(r["seed"], r["bits"]))
            for r in records)
        bar.update(1)
        bar.set_postfix_str(f"{group.mode.value} r={group.rank} n={group.n}")
    bar.close()
    return counts


def linear_layers(model) -> list[LayerSpec]:
    """Every ``nn.Linear`` of a (not yet adapted) model as a ``LayerSpec``, read from its shapes."""
    import torch

    return [LayerSpec(name, m.in_features, m.out_features)
            for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def process_pool(workers: int):
    """An executor running groups in ``workers`` fresh processes (``spawn``: safe with torch's threads).

    Each worker uses one torch thread, so on a machine with C cores up to C groups run at once; the
    records are the same as in one process (each group is a pure function of its config).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = check_int("workers", workers, 1)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_one_thread)


def _one_thread() -> None:
    """Worker start-up: one torch thread per worker, so that workers never oversubscribe the cores."""
    import torch

    torch.set_num_threads(1)


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


def _frozen_seed(seed: int) -> int:
    """The frozen factor's seed for a run seed: fixed before any data is seen, distinct from the subset's."""
    return 1_000_003 * (seed + 1)


def _loss(task) -> str:
    return "cross_entropy" if task.loss_kind == "zero_one" else "mse"


def _nonempty(name: str, values: tuple) -> tuple:
    if not values:
        raise InputError(f"{name} must list at least one value")
    if len(set(values)) != len(values):
        raise InputError(f"{name} must not repeat values, got {list(values)}")
    return values
