"""How a group's time grows with n, seeds (K), rank, steps and layer width; the cost model fitted to it.

Every point is one group of the default digits sweep (lora unless said, rank 4, n 400, K = 12, 300
full-batch steps, 8 bits) with one setting changed, run by ``run_group`` in this process on one torch
thread (what a worker does); the points are timed in rounds (every point once per round, the order
reversed every other round) and the median is kept. Layer width (the hidden size of the digits MLP)
needs its own pretrained network, so those points time the stacked training alone
(``train_stacked``), and are compared with the model's training part (per step + FLOPs).

The fit (non-negative least squares over the run_group points) is the cost model of
``infobound.harness.cost``: ``seconds = per_group + per_replica · K + per_step · steps + FLOPs / rate``, FLOPs counted
by ``cost.group_flops`` from the layer shapes. Worker start-up is timed as a fresh one-process pool
made ready (imports, task, pretrained weights from disk). The script prints a table (measured,
predicted, ratio), the fitted constants as a ``CostModel(...)`` line for ``cost.FITTED``, and saves a
plot (matplotlib, Agg).

    python benchmarks/bench_scaling.py [--repeats 3] [--plot scaling.png] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import time

import numpy as np
import torch
from scipy.optimize import nnls

from infobound.harness.cost import group_flops
from infobound.harness.sweep import SweepConfig, linear_layers, process_pool, run_group
from infobound.harness.tasks import get_task
from infobound.harness.train import train_stacked
from infobound.lora import inject_lora

BASE = dict(mode="lora", rank=4, n=400, k=12, steps=300)


def points(quick: bool) -> list[dict]:
    axes = {"n": (50, 100, 200, 400, 700), "k": (1, 4, 12, 24), "rank": (1, 2, 4, 8), "steps": (100, 300),
            "mode": ("lora", "b_only", "a_only")}
    if quick:
        axes = {"n": (100, 400), "k": (4, 12), "rank": (1, 8), "steps": (50, 100), "mode": ("lora", "b_only")}
    out, seen = [], set()
    for axis, values in axes.items():
        for v in values:
            p = {**BASE, **({"steps": 100} if quick else {}), axis: v, "axis": axis}
            key = tuple(sorted((k, v) for k, v in p.items() if k != "axis"))
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def group_of(p: dict):
    config = SweepConfig(modes=(p["mode"],), ranks=(p["rank"],), ns=(p["n"],), seeds=p["k"], steps=p["steps"])
    return config.groups()[0]


def features(p: dict, weights: int, test_n: int, bits: int = 1) -> tuple[float, float, float, float]:
    return 1.0, float(p["k"]), float(p["steps"]), group_flops(p["k"], p["n"], p["steps"], weights, p["n"] + test_n, bits + 1)


def time_width(hidden: int, steps: int) -> tuple[float, float]:
    """Seconds of ``train_stacked`` for the base setting at this hidden width, and its counted FLOPs."""
    task = get_task("digits", hidden=hidden)
    model = task.base_model()
    weights = sum(layer.d_in * layer.d_out for layer in linear_layers(model))
    inject_lora(model, task.default_targets, BASE["rank"], mode=BASE["mode"], stack=BASE["k"],
                seeds=list(range(BASE["k"])))
    (x, y), _ = task.resplit(BASE["n"], seed=0)
    x, y = torch.as_tensor(x).expand(BASE["k"], -1, -1), torch.as_tensor(y).expand(BASE["k"], -1)
    t0 = time.perf_counter()
    train_stacked(model, x, y, steps=steps, lr=1e-2)
    return time.perf_counter() - t0, group_flops(BASE["k"], BASE["n"], steps, weights, 0, 0)


def _ready() -> None:
    from infobound.harness.tasks import get_task as load

    load("digits").base_model()


def worker_start_seconds(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with process_pool(1) as pool:
            pool.submit(_ready).result()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all points (default 3)")
    parser.add_argument("--plot", default="scaling.png", help="where to save the plot (default scaling.png)")
    parser.add_argument("--quick", action="store_true", help="few points, short runs (a smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = get_task("digits")
    weights = sum(layer.d_in * layer.d_out for layer in linear_layers(task.base_model()))
    test_n = int(task.test_set()[0].shape[0])
    pts = points(args.quick)
    run_group(dataclasses.replace(group_of({**BASE, "n": 50, "k": 2}), steps=5))  # warm-up, untimed
    times = [[] for _ in pts]
    widths = (32, 64, 128) if args.quick else (32, 64, 128, 256)
    wsteps = 50 if args.quick else 150
    for h in widths:
        time_width(h, 2)  # pretrain (or load) each width before the clocks
    wtimes = {h: [] for h in widths}
    for r in range(args.repeats):
        order = list(range(len(pts))) if r % 2 == 0 else list(range(len(pts)))[::-1]
        for i in order:
            t0 = time.perf_counter()
            run_group(group_of(pts[i]))
            times[i].append(time.perf_counter() - t0)
        for h in widths:
            wtimes[h].append(time_width(h, wsteps)[0])
        print(f"round {r + 1} of {args.repeats} done", flush=True)
    start = worker_start_seconds(max(1, min(3, args.repeats)))

    measured = np.array([statistics.median(t) for t in times])
    x = np.array([features(p, weights, test_n) for p in pts])
    coef, _ = nnls(x, measured)
    per_group, per_replica, per_step, per_flop = coef
    rate = 1.0 / per_flop if per_flop > 0 else float("inf")
    predicted = x @ coef
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread; "
          f"median of {args.repeats} rounds")
    print(f"{'axis':6s} {'mode':6s} {'rank':>4s} {'n':>5s} {'K':>4s} {'steps':>5s} {'GFLOP':>8s} "
          f"{'measured s':>10s} {'model s':>8s} {'model/measured':>14s}")
    for p, f, m, e in zip(pts, x[:, 3], measured, predicted):
        print(f"{p['axis']:6s} {p['mode']:6s} {p['rank']:4d} {p['n']:5d} {p['k']:4d} {p['steps']:5d} {f / 1e9:8.2f} "
              f"{m:10.3f} {e:8.3f} {e / m:14.2f}")
    print(f"width (train_stacked only, {BASE['mode']} rank {BASE['rank']}, n {BASE['n']}, K {BASE['k']}, {wsteps} steps):")
    wmed = {}
    for h in widths:
        seconds = statistics.median(wtimes[h])
        flops = group_flops(BASE["k"], BASE["n"], wsteps, 64 * h + h * h + h * 10, 0, 0)
        train_part = per_step * wsteps + flops * per_flop
        wmed[h] = (seconds, train_part)
        print(f"   hidden {h:4d}: {flops / 1e9:7.2f} GFLOP, measured {seconds:7.3f} s, model's training part "
              f"{train_part:7.3f} s (model/measured {train_part / seconds:.2f}), {flops / seconds / 1e9:6.1f} GFLOP/s")
    rel = np.abs(predicted - measured) / measured
    print(f"fit: per group {per_group:.3g} s, per replica {per_replica:.3g} s, per step {per_step * 1e3:.3g} ms, {rate / 1e9:.3g} GFLOP/s; "
          f"worker start-up {start:.2f} s; |model - measured| / measured: median {np.median(rel):.1%}, "
          f"max {rel.max():.1%}")
    stamp = datetime.date.today().isoformat()
    print("for infobound/harness/cost.py:\n"
          f"FITTED = CostModel(per_group={per_group:.3g}, per_replica={per_replica:.3g}, per_step={per_step:.3g}, flops_per_second={rate:.3g}, "
          f"worker_start={start:.3g},\n                   source=\"{platform.machine()} {os.cpu_count()} cores, "
          f"1 thread per worker, {stamp}\")")
    _plot(args.plot, pts, measured, predicted, wmed)
    print(f"plot: {args.plot}")


def _plot(path: str, pts, measured, predicted, wmed) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [a for a in ("n", "k", "rank", "steps") if any(p["axis"] == a for p in pts)]
    fig, panels = plt.subplots(1, len(axes) + 1, figsize=(4 * (len(axes) + 1), 3.4))
    for ax, axis in zip(panels, axes):
        rows = sorted((p[axis], m, e) for p, m, e in zip(pts, measured, predicted) if p["axis"] == axis
                      or (p["axis"] != axis and all(p[a] == BASE[a] for a in BASE if a != "mode") and p["mode"] == "lora"))
        rows = sorted(dict((r[0], r) for r in rows).values())
        ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="measured")
        ax.plot([r[0] for r in rows], [r[2] for r in rows], "x--", label="cost model")
        ax.set_xlabel({"k": "seeds K", "n": "n (examples)", "rank": "rank", "steps": "steps"}[axis])
        ax.set_ylabel("seconds per group")
        ax.legend()
    ax = panels[-1]
    hs = sorted(wmed)
    ax.plot(hs, [wmed[h][0] for h in hs], "o-", label="measured (training)")
    ax.plot(hs, [wmed[h][1] for h in hs], "x--", label="model's training part")
    ax.set_xlabel("hidden width")
    ax.set_ylabel("seconds")
    ax.legend()
    fig.suptitle("group time against one setting at a time (others: lora, rank 4, n 400, K 12, 300 steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
