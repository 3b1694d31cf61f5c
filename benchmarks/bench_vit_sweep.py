"""The ViT sweep, timed whole: pretraining included (a fresh, empty pretrained-weights cache), then
8 seeds × 3 modes (lora, b_only, a_only) × 3 ranks × 2 n on mnist/vit with the machine's default
workers, against its limit of 15 minutes on 2 cores. Prints the pretraining and sweep times, the
total beside the limit, and the B-only − LoRA test-error differences the sweep found.

    python benchmarks/bench_vit_sweep.py [--task mnist/vit:mirror] [--ranks 1,4,8] [--n 250,1000] [--seeds 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

LIMIT = 900.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist/vit:mirror")
    parser.add_argument("--ranks", default="1,4,8")
    parser.add_argument("--n", default="250,1000")
    parser.add_argument("--seeds", default="8")
    parser.add_argument("--keep", default=None, help="write the sweep into this folder instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "INFOBOUND_CACHE": os.path.join(folder, "cache")}  # pretraining counted
        out = args.keep or os.path.join(folder, "out")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"from infobound.harness.tasks import get_task; get_task({args.task!r}).base_model()"],
                       check=True, env=env)
        pretrain = time.perf_counter() - t0
        argv = [sys.executable, "-m", "infobound.cli", "validate", "--task", args.task, "--out", out,
                "--seeds", args.seeds, "--ranks", args.ranks, "--n", args.n, "--no-progress"]
        done = subprocess.run(argv, check=True, env=env, capture_output=True, text=True)
        total = time.perf_counter() - t0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.task}: {args.seeds} seeds × 3 modes × ranks {args.ranks} × n {args.n} on {cores} core(s)")
    print(f"pretraining {pretrain:.0f} s, sweep {total - pretrain:.0f} s, total {total:.0f} s "
          f"= {total / LIMIT:.2f} of the {LIMIT:.0f} s limit")
    lines = done.stdout.splitlines()
    print("\n".join(line for line in lines if line.startswith("sweep:")))


if __name__ == "__main__":
    main()
