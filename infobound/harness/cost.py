"""A sweep's time before it runs: a cost model of one group, fitted to measured groups.

A group (K replicas × ``steps`` steps on n examples each) takes about

    seconds = per_group + per_replica · K + per_step · steps + flops / flops_per_second

where ``flops`` is counted from the layer shapes (``group_flops``: 6 FLOPs per weight per example
per training step, forward and backward, and 2 per weight per example evaluated): a fixed cost of
building the group, a cost per replica (its data, frozen draw, quantisation, codes and
certificates), a fixed cost of every step (the dispatch of a few dozen small operations, whatever
the sizes), and the arithmetic. ``benchmarks/bench_scaling.py``
times groups against n, seeds, rank and layer width, fits the four constants (non-negative least
squares) and prints the ``CostModel`` line to paste here; ``FITTED`` holds the constants it gave on
the machine and date it names. A sweep on ``workers`` processes is the groups handed out costliest
first (``sweep.schedule``), each to the worker that is free first, plus one worker start-up.
Another machine, task or load gives other times: the result is an estimate.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

__all__ = ["CostModel", "FITTED", "group_flops", "sweep_seconds"]


@dataclass(frozen=True)
class CostModel:
    """Seconds of a group on one worker (one torch thread): the three constants and their origin."""

    per_group: float
    """seconds per group: building the stack and what does not grow with K."""
    per_replica: float
    """seconds per replica beyond its arithmetic: data, frozen draw, quantisation, codes, certificates."""
    per_step: float
    """seconds per training step, whatever the sizes (operation dispatch)."""
    flops_per_second: float
    """sustained FLOP/s of the arithmetic on these small stacked shapes."""
    worker_start: float
    """seconds for a new worker process to be ready (imports, the task, the pretrained weights)."""
    source: str
    """where the constants come from: machine, date, and how they were measured."""

    def group_seconds(self, k: int, steps: int, flops: float) -> float:
        return self.per_group + self.per_replica * k + self.per_step * steps + flops / self.flops_per_second


FITTED = CostModel(per_group=0.0, per_replica=0.0372, per_step=0.00123, flops_per_second=4.19e10,
                   worker_start=0.0425,
                   source="x86_64, 2 quiet cores, 1 thread per worker (forked workers), 2026-12-01, "
                          "bench_scaling.py --repeats 2")
"""The constants ``benchmarks/bench_scaling.py`` fitted (see ``source``)."""


def group_flops(k: int, batch: int, steps: int, weights: int, evaluated: int, evaluations: int) -> float:
    """Counted FLOPs of a group: K replicas × (6 · weights · batch · steps of training, and
    2 · weights per example of each of ``evaluations`` passes over ``evaluated`` examples)."""
    return k * (6.0 * weights * batch * steps + 2.0 * weights * evaluated * evaluations)


def sweep_seconds(groups: list[tuple[int, int, float]], workers: int, model: CostModel = FITTED) -> float:
    """Wall seconds of groups ``(K, steps, flops)`` given in hand-out order: one after another in this
    process (``workers`` = 1), or each to the first free of ``workers`` new processes (start-up
    included)."""
    times = [model.group_seconds(k, steps, flops) for k, steps, flops in groups]
    if not times:
        return 0.0
    if workers <= 1:
        return sum(times)
    free = [0.0] * min(workers, len(times))
    for t in times:
        heapq.heappush(free, heapq.heappop(free) + t)
    return model.worker_start + max(free)
