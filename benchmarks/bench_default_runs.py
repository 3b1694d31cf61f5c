"""The two default sweeps, timed side by side in this one run: `infobound validate` (the seed sweep)
and `infobound validate --kind cmi` (the supersample suite, 2 supersamples × 20 masks), each into a
fresh temporary folder, with the machine's default workers. Prints each wall time beside its limit
(3 minutes for the seed sweep, 5 minutes for the CMI suite, on 2 cores) and their ratio.

    python benchmarks/bench_default_runs.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

LIMITS = {"seeds": 180.0, "cmi": 300.0}


def run(kind: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        argv = [sys.executable, "-m", "infobound.cli", "validate", "--out", os.path.join(folder, "out"),
                "--no-progress"] + (["--kind", "cmi"] if kind == "cmi" else [])
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"seeds": [], "cmi": []}
    for _ in range(args.repeats):  # interleaved: both see the same machine load
        for kind in times:
            times[kind].append(run(kind))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"default sweeps on {cores} core(s), {args.repeats} interleaved repeat(s) (best shown):")
    for kind, values in times.items():
        best = min(values)
        print(f"  {kind:5}: {best:7.1f} s  (limit {LIMITS[kind]:.0f} s: {best / LIMITS[kind]:.2f} of it)")
    print(f"  ratio cmi / seeds: {min(times['cmi']) / min(times['seeds']):.2f}")


if __name__ == "__main__":
    main()
