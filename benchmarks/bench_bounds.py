"""Seed bound on a grid of 10^6 configurations (rank × n × bits): vectorised vs a Python loop.

Both ways run in this one process, side by side. The loop calls the scalar API once per configuration;
by default it runs a seeded random sample of the grid (``--loop-sample``) and its per-configuration
time is scaled to the whole grid (printed as such); ``--loop-sample 0`` loops over all 10^6.
The two ways' values are compared on every configuration the loop visited.

    python benchmarks/bench_bounds.py [--preset roberta-large] [--targets query,value]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import infobound as ib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="roberta-large")
    parser.add_argument("--targets", default=None)
    parser.add_argument("--mode", default="lora")
    parser.add_argument("--loop-sample", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    spec = ib.preset_spec(args.preset, args.targets, mode=args.mode)
    ranks = np.arange(1, 126, dtype=float)  # 125
    ns = np.logspace(1, 12, 125)  # 125
    bits = np.arange(1, 65, dtype=float)  # 64  -> 125 * 125 * 64 = 1,000,000
    grid_r, grid_n, grid_q = ranks[:, None, None], ns[None, :, None], bits[None, None, :]
    size = ranks.size * ns.size * bits.size

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = ib.bound(spec, n=grid_n, rank=grid_r, bits=grid_q)
        times.append(time.perf_counter() - t0)
    t_vec = min(times)
    values = result.bound

    rng = np.random.default_rng(0)
    flat = np.arange(size) if args.loop_sample <= 0 else rng.choice(size, args.loop_sample, replace=False)
    idx = np.unravel_index(flat, values.shape)
    t0 = time.perf_counter()
    looped = [
        ib.bound(spec, n=float(ns[j]), rank=int(ranks[i]), bits=int(bits[k])).bound
        for i, j, k in zip(*idx)
    ]
    t_loop_visited = time.perf_counter() - t0
    per_config = t_loop_visited / flat.size
    t_loop_grid = per_config * size
    max_rel = float(np.max(np.abs(np.asarray(looped) - values[idx]) / values[idx]))

    print(f"preset {args.preset}, mode {args.mode}, layers {len(spec.layers)}; grid {size:,} configurations "
          f"(rank 1..125 × n 1e1..1e12 × bits 1..64)")
    print(f"vectorised: {t_vec:.3f} s for the grid (best of {args.repeats}); target < 0.5 s")
    print(f"python loop: {per_config * 1e6:.1f} µs per configuration over {flat.size:,} configurations "
          f"({t_loop_visited:.2f} s); {'measured' if args.loop_sample <= 0 else 'scaled'} to the grid: "
          f"{t_loop_grid:.1f} s")
    print(f"speed-up: {t_loop_grid / t_vec:.0f}x (target >= 100x); max relative difference {max_rel:.1e}")


if __name__ == "__main__":
    main()
