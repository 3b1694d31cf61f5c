"""Sweep harness vs a one-run-at-a-time loop, and B-only vs LoRA step time and memory, side by side.

Part 1 runs one small sweep (task × modes × ranks × n × seeds × bits) two ways in this process:

(a) the harness: ``run_group`` for every group of a ``SweepConfig``; a group trains all its seeds at
    once as a stack of replicas (``inject_lora(..., stack=K)``, ``train_stacked``, ``evaluate_stacked``);
(b) a plain loop, as one would write it without stacking: for every configuration and seed, a fresh
    ``task.base_model()``, an unstacked ``inject_lora(..., seed=<the harness's frozen seed for that run
    seed>)``, ``torch.optim.Adam`` (same steps and lr) on full-batch cross-entropy over
    ``task.train_set(n, seed)``, the trained parameters rounded to the same ``UniformGrid``, and the
    train / test 0-1 error.

The task is built (and its network pretrained) once before either clock starts. Stacked Adam equals
separate Adam (the objective is a sum of per-replica losses and Adam is elementwise), so the two ways
should agree up to float rounding of batched vs unbatched matrix products; the per-run and
per-configuration differences of the test error are printed with the agreement check.

Part 2 trains a wide MLP (default: three adapted 1024×1024 layers with GELU, a frozen head, batch
512, rank 16; unstacked, full batch) in ``b_only`` and in ``lora`` mode at the same rank.
Step time: the median after warm-up, the two modes' steps alternating in one process so that load
on a shared machine hits both. Peak memory: each mode in a fresh subprocess (this script with a
hidden flag), the peak resident set during training (``getrusage(RUSAGE_SELF).ru_maxrss``, read as
VmHWM after resetting it through ``/proc/self/clear_refs`` where Linux allows) minus the resident set
after the model and data were built; tracemalloc does not see torch's allocations, so these are
resident-set deltas. Exact tensor byte counts (gradients, Adam moments, activations autograd saves
for backward) are printed next to them. With GELU the adapted layers' inputs are kept only for
A's gradient, which ``b_only`` does not compute; with ``--act relu`` they are kept anyway (ReLU
saves its output, the next layer's input), and only A's gradient and Adam moments differ.

    python benchmarks/bench_harness.py [--quick] [--seeds 12] [--steps 200] [--modes lora,b_only,a_only] [--ns 100,400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import OrderedDict, defaultdict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from infobound.errors import InputError
from infobound.harness.sweep import SweepConfig, frozen_seed, default_workers, process_pool, run_group
from infobound.harness.tasks import get_task
from infobound.harness.train import train_stacked
from infobound.lora import inject_lora, trainable_parameters
from infobound.quantize import UniformGrid, quantize_trainable_
from infobound.spec import Mode

CHILD_FLAG = "--memory-child"
MEMORY_STEPS = 5  # steps per memory subprocess: the peak is reached by the second step
MMAP_THRESHOLD = 65536  # bytes; glibc serves every larger allocation with its own mapping (see part 2)


# ------------------------------------------------------------------------------ part 1: sweep
def harness_way(config: SweepConfig) -> tuple[float, dict, list[dict]]:
    """Every group through ``run_group``; returns (wall seconds, {n: seconds}, records)."""
    t0 = time.perf_counter()
    by_n, records = defaultdict(float), []
    for group in config.groups():
        t = time.perf_counter()
        records += run_group(group)
        by_n[group.n] += time.perf_counter() - t
    return time.perf_counter() - t0, by_n, records


def one_run(task, group, seed: int, x_test: torch.Tensor, y_test: torch.Tensor) -> dict:
    """One run of ``group`` for ``seed``, unstacked: {bits: (train_error, test_error, test_loss)}."""
    model = task.base_model()
    rank = 1 if group.mode is Mode.FULL else group.rank
    inject_lora(model, group.targets or task.default_targets, rank, mode=group.mode, alpha=group.alpha,
                init=group.init, seed=frozen_seed(seed))
    x, y = task.train_set(group.n, seed=seed)  # (n, d_in), (n,)
    params = trainable_parameters(model)
    optimizer = torch.optim.Adam(params, lr=group.lr)
    model.train()
    for _ in range(group.steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    trained = [p.detach().clone() for p in params]

    model.eval()
    out = {}
    for bits in group.bits:
        if bits is not None:
            quantize_trainable_(model, UniformGrid(bits, group.clip))
        with torch.no_grad():
            logits_train, logits_test = model(x), model(x_test)  # (n, C), (m, C)
            out[bits] = (float((logits_train.argmax(-1) != y).double().mean()),
                         float((logits_test.argmax(-1) != y_test).double().mean()),
                         float(F.cross_entropy(logits_test, y_test)))
        with torch.no_grad():  # back to the trained values for the next bit width
            for p, value in zip(params, trained):
                p.copy_(value)
    return out


def loop_way(config: SweepConfig, task) -> tuple[float, dict, dict]:
    """Every (configuration, seed) trained alone; returns (wall seconds, {n: seconds},
    {(mode, rank, n, seed, bits): (train_error, test_error, test_loss)})."""
    t0 = time.perf_counter()
    x_test, y_test = task.test_set()
    by_n, results = defaultdict(float), {}
    for group in config.groups():
        t = time.perf_counter()
        for seed in group.seeds:
            for bits, values in one_run(task, group, seed, x_test, y_test).items():
                results[(group.mode.value, group.rank, group.n, seed, bits)] = values
        by_n[group.n] += time.perf_counter() - t
    return time.perf_counter() - t0, by_n, results


def parameter_drift(task, group, checkpoints: tuple[int, ...]) -> dict[int, float]:
    """Max |trained parameter difference| between the stack and unstacked runs after each checkpoint's steps."""
    seeds = list(group.seeds)
    targets = group.targets or task.default_targets
    rank = 1 if group.mode is Mode.FULL else group.rank
    train = [task.train_set(group.n, seed=s) for s in seeds]
    x = torch.stack([a for a, _ in train])  # (K, n, d_in)
    y = torch.stack([b for _, b in train])  # (K, n)
    drift = {}
    for steps in checkpoints:
        stacked = task.base_model()
        inject_lora(stacked, targets, rank, mode=group.mode, alpha=group.alpha, init=group.init,
                    stack=len(seeds), seeds=[frozen_seed(s) for s in seeds])
        train_stacked(stacked, x, y, steps=steps, lr=group.lr, seed=seeds[0])
        stacked_params = dict(stacked.named_parameters())
        worst = 0.0
        for k, seed in enumerate(seeds):
            model = task.base_model()
            inject_lora(model, targets, rank, mode=group.mode, alpha=group.alpha, init=group.init,
                        seed=frozen_seed(seed))
            optimizer = torch.optim.Adam(trainable_parameters(model), lr=group.lr)
            for _ in range(steps):
                loss = F.cross_entropy(model(train[k][0]), train[k][1])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            for name, p in model.named_parameters():
                if p.requires_grad:
                    worst = max(worst, float((stacked_params[name][k] - p).detach().abs().max()))
        drift[steps] = worst
    return drift


def compare(records: list[dict], looped: dict) -> dict:
    """Differences of the two ways: per run and per configuration (mean over seeds)."""
    run_diffs, loss_diffs = [], []
    harness_means, loop_means = defaultdict(list), defaultdict(list)
    for r in records:
        key = (r["mode"], r["rank"], r["n"], r["seed"], r["bits"])
        _, test_error, test_loss = looped[key]
        run_diffs.append(abs(r["test_error"] - test_error))
        loss_diffs.append(abs(r["test_loss"] - test_loss))
        config = key[:3] + key[4:]
        harness_means[config].append(r["test_error"])
        loop_means[config].append(test_error)
    mean_diffs = [abs(np.mean(harness_means[c]) - np.mean(loop_means[c])) for c in harness_means]
    return {
        "runs": len(run_diffs),
        "max_run": max(run_diffs),
        "runs_differing": sum(d > 0 for d in run_diffs),
        "max_mean": max(mean_diffs),
        "max_loss": max(loss_diffs),
        "median_loss": float(np.median(loss_diffs)),
        "test_n": records[0]["test_n"],
    }


def pooled_way(config: SweepConfig, workers: int) -> tuple[float, list[dict]]:
    """Every group through ``run_group`` in ``workers`` processes; returns (wall seconds, records)."""
    t0 = time.perf_counter()
    with process_pool(workers) as pool:
        records = [r for group_records in pool.map(run_group, config.groups()) for r in group_records]
    return time.perf_counter() - t0, records


def _same_records(a: list[dict], b: list[dict]) -> bool:
    strip = lambda recs: sorted((r["key"], {k: v for k, v in r.items() if k != "wall_time"}) for r in recs)  # noqa: E731
    return [k for k, _ in strip(a)] == [k for k, _ in strip(b)] and all(
        x == y for (_, x), (_, y) in zip(strip(a), strip(b)))


def part_sweep(args) -> None:
    try:
        config = SweepConfig(task=args.task, modes=tuple(args.modes), ranks=tuple(args.ranks), ns=tuple(args.ns),
                             seeds=args.seeds, bits=tuple(args.bits), steps=args.steps, lr=args.lr)
        task = get_task(config.task)
    except InputError as err:
        sys.exit(f"bench_harness.py: {err}")
    if task.loss_kind != "zero_one":
        sys.exit(f"--task must be a classification task (0-1 error), got {config.task!r}")
    task.base_model()  # pretrains once (cached per process): not timed in either way
    groups = config.groups()
    runs = len(groups) * config.seeds
    bits_text = ",".join("none" if b is None else str(b) for b in config.bits)
    print(f"== 1. sweep: task {config.task}, modes {','.join(m.value for m in config.modes)}, ranks "
          f"{','.join(map(str, config.ranks))}, n {','.join(map(str, config.ns))}, {config.seeds} seeds, bits "
          f"{bits_text}; {config.steps} full-batch Adam steps, lr {config.lr:g}")
    print(f"   {len(groups)} configurations x {config.seeds} seeds = {runs} runs "
          f"(each evaluated at {len(config.bits)} bit width(s))")

    t_harness, harness_by_n, records = harness_way(config)
    t_pool, pooled = pooled_way(config, args.workers)
    t_loop, loop_by_n, looped = loop_way(config, task)
    print(f"   harness (run_group, stacked seeds): {t_harness:8.2f} s  {runs / t_harness:7.2f} runs/s")
    print(f"   harness, {args.workers} worker processes:    {t_pool:8.2f} s  {runs / t_pool:7.2f} runs/s "
          f"(as infobound validate runs it; process start-up and pretraining included; records "
          f"{'identical' if _same_records(records, pooled) else 'DIFFERENT'})")
    print(f"   one run at a time (plain loop):     {t_loop:8.2f} s  {runs / t_loop:7.2f} runs/s")
    print(f"   speed-up: {t_loop / t_harness:.2f}x in one process, {t_loop / t_pool:.2f}x with "
          f"{args.workers} workers (target >= 5x)")
    run_steps = runs // len(config.ns) * config.steps  # (run, step) pairs at each n
    for n in config.ns:
        h, lo = harness_by_n[n], loop_by_n[n]
        print(f"     n = {n:4d}: harness {h:6.2f} s, loop {lo:6.2f} s, speed-up {lo / h:5.2f}x; per run and step "
              f"{h / run_steps * 1e3:.3f} ms vs {lo / run_steps * 1e3:.3f} ms")

    c = compare(records, looped)
    run_tol = 2.0 / c["test_n"]  # two test examples out of test_n
    per_run_ok, per_config_ok = c["max_run"] <= run_tol + 1e-12, c["max_mean"] <= 1e-3
    print(f"   agreement over {c['runs']} (run, bits) records: {c['runs_differing']} differ in test error at all; "
          f"max |test error difference| per run {c['max_run']:.4f} ({round(c['max_run'] * c['test_n'])} of "
          f"{c['test_n']} test examples), per configuration (mean over seeds) {c['max_mean']:.2e}; |test loss "
          f"difference| median {c['median_loss']:.1e}, max {c['max_loss']:.1e}")
    first = groups[0]
    drift = parameter_drift(task, first, tuple(sorted({1, min(10, config.steps), config.steps})))
    print(f"   max |trained parameter difference|, stack vs unstacked runs ({first.mode.value}, rank {first.rank}, "
          f"n {first.n}, unquantised): " + ", ".join(f"{d:.1e} after {k} step{'s' * (k > 1)}" for k, d in drift.items())
          + " (float rounding, then its growth in training)")
    print(f"   check: per run <= {run_tol:.4f} (2 test examples) {'yes' if per_run_ok else 'no'}; per-configuration "
          f"mean <= 1e-3 {'yes' if per_config_ok else 'no'} -> {'PASS' if per_run_ok or per_config_ok else 'FAIL'}")


# ------------------------------------------------------------------------------ part 2: memory
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def _wide_mlp(width: int, depth: int, act: str, classes: int = 10) -> nn.Sequential:
    """``depth`` hidden layers ``fc1..fc{depth}`` of ``width -> width``, each followed by ``act``, then a head."""
    layers = OrderedDict()
    for i in range(1, depth + 1):
        layers[f"fc{i}"] = nn.Linear(width, width)
        layers[f"act{i}"] = ACTIVATIONS[act]()
    layers["head"] = nn.Linear(width, classes)
    return nn.Sequential(layers)


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    """Peak resident set size: VmHWM of /proc/self/status (which /proc/self/clear_refs resets), else
    ``getrusage(RUSAGE_SELF).ru_maxrss`` (which also keeps the peaks of exited threads, so it cannot be reset)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _reset_peak_rss() -> bool:
    """Set the peak RSS back to the current RSS (Linux >= 4.0: /proc/self/clear_refs); False if unavailable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _saved_activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of distinct tensors autograd saves for backward in one step, parameters and input excluded."""
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {x.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(x), y)
    return sum(seen.values())


def _wide_setup(mode: str, args) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.optim.Optimizer]:
    """The wide MLP (same base weights and data for every mode), adapted in ``mode``, and its Adam."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _wide_mlp(args.width, args.depth, args.act)
        x = torch.randn(args.batch, args.width)  # (batch, width)
        y = torch.randint(0, 10, (args.batch,))
    inject_lora(model, [f"fc{i}" for i in range(1, args.depth + 1)], args.rank, mode=mode, seed=0)
    return model, x, y, torch.optim.Adam(trainable_parameters(model), lr=1e-3)


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def memory_child(mode: str, args) -> dict:
    """Train one mode in this (fresh) process; its peak-memory increase and exact tensor bytes."""
    model, x, y, optimizer = _wide_setup(mode, args)
    trainable = sum(p.numel() for p in trainable_parameters(model))
    saved = _saved_activation_bytes(model, x, y)
    reset = _reset_peak_rss()
    rss_built, peak_built = _rss_bytes(), _peak_rss_bytes()
    for _ in range(MEMORY_STEPS):
        _step(model, x, y, optimizer)
    return {
        "mode": mode,
        "peak_delta": _peak_rss_bytes() - rss_built,
        "peak_before": peak_built - rss_built,  # > 0: an earlier peak could hide part of the increase
        "reset": reset,
        "trainable": trainable,
        "state_bytes": 3 * 4 * trainable,  # gradient + Adam's two moments, float32
        "saved_bytes": saved,
    }


def run_child(mode: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), CHILD_FLAG, mode, "--width", str(args.width),
           "--depth", str(args.depth), "--batch", str(args.batch), "--rank", str(args.rank), "--act", args.act]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.exit(f"memory subprocess for {mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def step_times(args) -> dict[str, float]:
    """Median step time of each mode; the modes' steps alternate, so load on a shared machine hits both."""
    setups = {mode: _wide_setup(mode, args) for mode in ("lora", "b_only")}
    times = defaultdict(list)
    for _ in range(args.warmup + args.mem_steps):
        for mode, setup in setups.items():
            t0 = time.perf_counter()
            _step(*setup)
            times[mode].append(time.perf_counter() - t0)
    return {mode: statistics.median(t[args.warmup:]) for mode, t in times.items()}


def part_memory(args) -> None:
    print(f"== 2. b_only vs lora at rank {args.rank}: MLP of {args.depth} adapted {args.width}x{args.width} layers "
          f"({args.act}) + frozen head, batch {args.batch}, full-batch Adam, unstacked")
    times = step_times(args)
    runs = defaultdict(list)
    for _ in range(args.mem_repeats):
        for mode in ("lora", "b_only"):
            runs[mode].append(run_child(mode, args))
    mib = 2.0**20
    summary = {}
    for mode in ("lora", "b_only"):
        rs = runs[mode]
        summary[mode] = s = {
            "step_s": times[mode],
            "peak_delta": statistics.median(r["peak_delta"] for r in rs),
            **{k: rs[0][k] for k in ("trainable", "state_bytes", "saved_bytes")},
        }
        each = ", ".join(f"{r['peak_delta'] / mib:.1f}" for r in rs)
        print(f"   {mode:6s}: step {s['step_s'] * 1e3:7.2f} ms | peak RSS increase {s['peak_delta'] / mib:6.2f} MiB "
              f"(each subprocess: {each}) | exact: {s['trainable']:,} trained floats, grad + Adam moments "
              f"{s['state_bytes'] / mib:.2f} MiB, activations saved for backward {s['saved_bytes'] / mib:.2f} MiB")
    b, lo = summary["b_only"], summary["lora"]
    delta_ratio = b["peak_delta"] / lo["peak_delta"] if lo["peak_delta"] > 0 else float("nan")
    exact_b, exact_lo = b["state_bytes"] + b["saved_bytes"], lo["state_bytes"] + lo["saved_bytes"]
    print(f"   ratios b_only/lora: step time {b['step_s'] / lo['step_s']:.3f}; peak RSS increase {delta_ratio:.3f} "
          f"({(lo['peak_delta'] - b['peak_delta']) / mib:+.2f} MiB for lora); exact tensor bytes (grad + Adam + "
          f"saved activations) {exact_b / exact_lo:.3f} ({(exact_lo - exact_b) / mib:+.2f} MiB for lora)")
    all_runs = runs["lora"] + runs["b_only"]
    reset = all(r["reset"] for r in all_runs)
    how = ("the peak RSS reset after the build (/proc/self/clear_refs), then VmHWM (the kernel's peak RSS, "
           "the number ru_maxrss reports, but resettable)" if reset else "getrusage(RUSAGE_SELF).ru_maxrss")
    print(f"   step time: median of {args.mem_steps} steps after {args.warmup} warm-up, the two modes' steps "
          "alternating in this process (load on a shared machine hits both).")
    print(f"   memory: {MEMORY_STEPS} steps per fresh subprocess, median of {args.mem_repeats} per mode; {how} "
          "minus the RSS after the model and data were built. These are resident-set deltas (tracemalloc does not "
          f"see torch's allocations); the subprocesses run with MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}, so every "
          "tensor of 64 KiB or more is its own mapping, returned to the system when freed, and the delta follows "
          "live tensors instead of allocator caching. They include temporaries and BLAS workspace; the exact "
          "counts are read from the tensors (saved activations: distinct storages autograd keeps for backward, "
          "parameters and input excluded).")
    if not reset:
        hidden = max(r["peak_before"] for r in all_runs)
        if hidden > 0:
            print(f"   note: a subprocess had peaked {hidden / mib:.1f} MiB above its post-build RSS before "
                  "training and the peak could not be reset; an increase below that is hidden")


# ------------------------------------------------------------------------------ entry point
def _csv(kind):
    def parse(text: str) -> list:
        return [kind(v.strip()) for v in text.split(",") if v.strip()]
    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _bits(text: str):
    return None if text.strip().lower() in ("none", "") else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small sweep and a short memory run (smoke test)")
    parser.add_argument("--task", default="digits", help="a classification task: digits or teacher")
    parser.add_argument("--modes", type=_csv(str), default=None, help="default lora,b_only,a_only")
    parser.add_argument("--ranks", type=_csv(int), default=None, help="default 1,4")
    parser.add_argument("--ns", type=_csv(int), default=None, help="training-set sizes; default 100,400")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per configuration; default 12")
    parser.add_argument("--workers", type=_positive, default=default_workers(),
                        help="worker processes for the pooled harness way (default: one per core, at most 4)")
    parser.add_argument("--bits", type=_csv(_bits), default=[8], help="bit widths, 'none' = unquantised; default 8")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per run; default 200")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--width", type=_positive, default=1024, help="part 2: hidden width")
    parser.add_argument("--depth", type=_positive, default=3, help="part 2: adapted hidden layers")
    parser.add_argument("--batch", type=_positive, default=512, help="part 2: batch size")
    parser.add_argument("--rank", type=_positive, default=16, help="part 2: adapter rank")
    parser.add_argument("--act", choices=sorted(ACTIVATIONS), default="gelu", help="part 2: activation")
    parser.add_argument("--mem-steps", type=_positive, default=None, help="part 2: timed steps per mode; default 30")
    parser.add_argument("--warmup", type=_non_negative, default=3, help="part 2: untimed steps before the timed ones")
    parser.add_argument("--mem-repeats", type=_positive, default=None, help="part 2: memory subprocesses per mode; default 2")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(CHILD_FLAG, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    quick = args.quick
    defaults = {"modes": ["lora", "b_only"] if quick else ["lora", "b_only", "a_only"],
                "ranks": [1] if quick else [1, 4], "ns": [100] if quick else [100, 400],
                "seeds": 4 if quick else 12, "steps": 50 if quick else 200,
                "mem_steps": 8 if quick else 30, "mem_repeats": 1 if quick else 2}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args)))
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    if not args.skip_sweep:
        part_sweep(args)
    if not args.skip_memory:
        part_memory(args)
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
