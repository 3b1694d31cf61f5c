"""The default sweep three ways, side by side in one run: the harness, and a one-run-at-a-time loop in
1 process and in as many processes as the harness uses; GFLOP/s against a peak measured here; agreement.

(a) harness: the sweep of ``infobound validate``'s defaults (``SweepConfig()``: digits, modes
    lora,b_only,a_only, ranks 1,2,4,8, n 100,200,400,700, 12 seeds, 8 bits, 300 full-batch steps) run
    by ``run_sweep`` into a fresh store with ``--workers`` worker processes (default: as
    ``infobound validate``, one per core, at most 4); pool start-up and storing included, the report
    left out;
(b) loop, 1 process: every run alone, as one writes it without stacking: ``task.base_model()``, an
    unstacked ``inject_lora`` with the harness's frozen seed, ``torch.optim.Adam`` on full-batch
    cross-entropy over the run's own training set (the same split the harness draws), the trained
    parameters rounded to the same grid, train and test 0-1 error, and the same certificates the
    harness writes, computed for the run alone with the same library calls (code length and
    certificates on the sweep's grid; the adaptive grid chosen as the harness chooses it, then its
    code, certificates and test error); one torch thread. The seconds of its
    certificates are timed too, so the ratios are also printed for the loop without them;
(c) loop, N processes: the same loop, a configuration's runs per task, over N worker processes
    (``process_pool``, as the harness's).

The pretrained network is built before any clock starts (and on disk). With
``--repeats R`` the three ways run R times in turn, the order reversed every other round, and every
time is printed; the ratios use the medians.

FLOPs are counted, not guessed: torch's ``FlopCounterMode`` counts the matrix products that each
program executes in training (forward and backward), run on each group for one and two steps
(``training_flops``); evaluation is left out (so the achieved rates are a lower bound). The harness
forms each replica's merged weight and so computes its whole gradient; the loop's factored adapters
need fewer products. Each way's rate is over its own products, and the harness's also over the
loop's (the work the task needs). The peak is measured in the same run: ``torch.bmm`` of
the stacked first layer's shapes, ``(K, n, d_in) @ (K, d_in, d_out)``, one thread, best of a few.

Agreement: (1) bitwise, where the ops are deterministic: a sample of groups (every mode, smallest
and largest rank and n) is rerun one seed at a time through the same code (``run_group``; the seed
as a stack of two copies of itself, since for a stack of one torch routes some rank-1 products to
other kernels) and every field of every record must equal the stacked run's exactly: a replica of a
stack does the same arithmetic as alone, so any difference is a bug, not rounding.
(2) the loop against the harness, every run: the loop is a different program (unstacked layers,
unmerged adapters, other kernels), so test errors may differ by float rounding; the count of runs
and test examples that differ is printed for information, and a per-configuration mean difference
above 5 % of the test set fails (a real difference in what is trained, not rounding). Any failure
prints FAIL and exits 1.

    python benchmarks/bench_harness.py [--workers N] [--repeats R] [--quick] [--self-test]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch
from torch.nn import functional as F

from infobound.harness.store import RunStore
from infobound.harness.allocator import keep_freed_memory
from infobound.harness.sweep import (SweepConfig, default_workers, frozen_seed, process_pool, run_group,
                                     run_sweep)
from infobound.codelength import Grid
from infobound.harness.codes import adaptive_bits, adaptive_grids, choose_adaptive_lazily, run_certificates, seed_bits
from infobound.harness.tasks import get_task
from infobound.harness.train import train_stacked
from infobound.lora import inject_lora, trainable_parameters
from infobound.quantize import UniformGrid, quantize_trainable_
from infobound.spec import Mode


def sweep_config(quick: bool) -> SweepConfig:
    if quick:  # a smoke test of the script, not a measurement
        return SweepConfig(ranks=(1, 4), ns=(100, 200), seeds=4, steps=60)
    return SweepConfig()  # infobound validate's defaults


# ------------------------------------------------------------------------------ (a) harness
def harness_way(config: SweepConfig, workers: int) -> tuple[float, list[dict]]:
    """The sweep as ``infobound validate`` trains it (pool, run_sweep, a fresh store)."""
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        store = RunStore(folder)
        with store:
            if workers > 1:
                with process_pool(workers) as pool:
                    run_sweep(config, store, executor=pool, progress=False)
            else:
                run_sweep(config, store, progress=False)
            seconds = time.perf_counter() - t0
            records = store.records()
    return seconds, records


# ------------------------------------------------------------------------------ (b), (c) loop
def run_data(task, group, seed: int):
    """The run's training and test sets, as the harness draws them (its split)."""
    if group.split == "per_seed":
        (x, y), (x_test, y_test) = task.resplit(group.n, seed=seed)
    else:
        (x, y), (x_test, y_test) = task.train_set(group.n, seed=seed), task.test_set()
    return [torch.as_tensor(a) for a in (x, y, x_test, y_test)]


def loop_train(model, x, y, steps: int, lr: float = 0.01) -> None:
    """The loop's training of one run: unstacked, torch.optim.Adam, full-batch cross-entropy."""
    optimizer = torch.optim.Adam(trainable_parameters(model), lr=lr)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def one_run(task, group, seed: int) -> tuple[dict, dict, float]:
    """One run, unstacked: ({bits: test 0-1 loss per example (int8 array)}, its certificate fields,
    the seconds its certificates took). The certificates are the harness's outputs computed for this
    run alone with the same library calls: the code length and certificates on the sweep's grid, and
    the adaptive grid's (candidate grids evaluated on the training set as the harness does, the chosen
    one on the test set)."""
    x, y, x_test, y_test = run_data(task, group, seed)
    model = task.base_model()
    rank = 1 if group.mode is Mode.FULL else group.rank
    inject_lora(model, group.targets or task.default_targets, rank, mode=group.mode, alpha=group.alpha,
                init=group.init, seed=frozen_seed(seed))
    params = trainable_parameters(model)
    loop_train(model, x, y, group.steps, group.lr)
    trained = [p.detach().clone() for p in params]
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    model.eval()

    def errors(grid, inputs, labels):
        quantize_trainable_(model, UniformGrid(grid.bits, grid.clip))
        with torch.no_grad():
            wrong = (model(inputs).argmax(-1) != labels).to(torch.int8).numpy()
            for p, value in zip(params, trained):  # back to the trained values
                p.copy_(value)
        return wrong

    def indices(grid):
        return {name: grid.indices(value.double().numpy()) for name, value in zip(names, trained)}

    out, fields, cert_seconds = {}, {}, 0.0
    n, test_n = int(x.shape[0]), int(x_test.shape[0])
    extra = seed_bits(group.mode, group.seed_count)
    for bits in group.bits:
        if bits is None:
            with torch.no_grad():
                out[bits] = (model(x_test).argmax(-1) != y_test).to(torch.int8).numpy()
            continue
        grid = Grid(bits, group.clip)
        out[bits] = errors(grid, x_test, y_test)
        t0 = time.perf_counter()
        train_error = float(errors(grid, x, y).mean())
        (fixed, _), = run_certificates([indices(grid)], [grid], extra, [train_error], n,
                                       [float(out[bits].mean())], test_n)
        fields[bits] = fixed
        cert_seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    grids = adaptive_grids()
    candidates = [[indices(g)] for g in grids]  # the harness's choice, for one run: a candidate grid is
    # evaluated only while it could still be chosen (codes.choose_adaptive_lazily)
    (j,), train_errors = choose_adaptive_lazily(adaptive_bits(candidates, extra), n,
                                                lambda c: [errors(grids[c], x, y).mean()])
    (adaptive, _), = run_certificates([candidates[j][0]], [grids[j]], extra, [float(train_errors[j][0])], n,
                                      [float(errors(grids[j], x_test, y_test).mean())], test_n,
                                      grid_candidates=len(grids), prefix="adaptive_")
    fields["adaptive"] = adaptive
    cert_seconds += time.perf_counter() - t0
    return out, fields, cert_seconds


def loop_group(group) -> tuple[dict, dict, float]:
    """Every run of ``group``, one after another: ({(mode, rank, n, seed, bits): test 0-1 losses},
    {(mode, rank, n, seed): certificate fields}, seconds of certificates). The loop's process gets
    the harness's allocator settings too, so both sides run on the same allocator and the ratio is
    the stacking's."""
    torch.set_num_threads(1)
    keep_freed_memory()
    task = get_task(group.task)
    losses, fields, seconds = {}, {}, 0.0
    for seed in group.seeds:
        out, certified, cert_seconds = one_run(task, group, seed)
        losses.update({(group.mode.value, group.rank, group.n, seed, bits): v for bits, v in out.items()})
        fields[(group.mode.value, group.rank, group.n, seed)] = certified
        seconds += cert_seconds
    return losses, fields, seconds


def loop_way(config: SweepConfig, workers: int) -> tuple[float, tuple[dict, dict, float]]:
    """The loop's wall time and (test losses, certificate fields, seconds of certificates summed
    over its processes)."""
    groups = longest_first(config.groups())
    t0 = time.perf_counter()
    losses, fields, seconds = {}, {}, 0.0
    if workers == 1:
        parts = map(loop_group, groups)
    else:
        pool = process_pool(workers)
        parts = pool.map(loop_group, groups)
    try:
        for part_losses, part_fields, part_seconds in parts:
            losses.update(part_losses)
            fields.update(part_fields)
            seconds += part_seconds
    finally:
        if workers > 1:
            pool.shutdown()
    return time.perf_counter() - t0, (losses, fields, seconds)


def longest_first(groups: list) -> list:
    """The loop's groups in the harness's order (largest first) when the harness has one."""
    try:
        from infobound.harness.sweep import schedule
    except ImportError:
        return groups
    return schedule(groups)


# ------------------------------------------------------------------------------ FLOPs and peak
def layer_shapes(task) -> list[tuple[str, int, int]]:
    model = task.base_model()
    return [(name, m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)]


def _train_flops(model, x, y, steps: int, train) -> float:
    """Matrix-product FLOPs of ``train(model, x, y, steps)``, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train(model, x, y, steps)
    return float(counter.get_total_flops())


def _harness_train(model, x, y, steps: int) -> None:
    train_stacked(model, x, y, steps=steps, lr=0.01)


def training_flops(config: SweepConfig, task) -> dict[str, float]:
    """The matrix-product FLOPs each way executes in training, every run of the sweep: counted by
    torch's ``FlopCounterMode`` (forward and backward, 2 per multiply-add) on the very programs, not
    from a formula. Each group's stack (the harness) and one of its runs (the loop) are trained for
    1 and for 2 steps; the difference is a step, the rest the one-off part (the harness's first-layer
    products of ``lora.fixed_input``): total = c(1) + (steps − 1) · (c(2) − c(1)). The harness forms
    each replica's merged weight, so it also computes that weight's full gradient; the loop's
    factored adapter does fewer products; evaluation is left out of both."""
    from infobound.harness.sweep import effective_batch

    out = {"harness": 0.0, "loop": 0.0}
    targets = config.targets or task.default_targets
    for group in config.groups():
        if effective_batch(task.default_batch_size if group.batch_size is None else group.batch_size,
                           group.n) is not None:
            raise SystemExit("bench_harness.py counts full-batch sweeps only")
        k = len(group.seeds)
        rank = 1 if group.mode is Mode.FULL else group.rank
        x = torch.rand(k, group.n, task.d_in)
        y = torch.randint(0, task.n_classes, (k, group.n))
        for way, stack in (("harness", k), ("loop", None)):
            counts = []
            for steps in (1, 2):
                model = task.base_model()
                if stack is None:
                    inject_lora(model, targets, rank, mode=group.mode, alpha=group.alpha, init=group.init,
                                seed=frozen_seed(group.seeds[0]))
                    counts.append(_train_flops(model, x[0], y[0], steps, loop_train))
                else:
                    inject_lora(model, targets, rank, mode=group.mode, alpha=group.alpha, init=group.init,
                                stack=stack, seeds=group.frozen_seeds())
                    counts.append(_train_flops(model, x, y, steps, _harness_train))
            total = counts[0] + (group.steps - 1) * (counts[1] - counts[0])
            out[way] += total * (k if stack is None else 1)
    return out


def measured_peak(task, k: int, ns: tuple[int, ...], repeats: int = 20) -> dict[int, float]:
    """GFLOP/s of ``torch.bmm`` of the first layer's stacked shapes, one thread, best of ``repeats``."""
    _, d_in, d_out = layer_shapes(task)[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for n in ns:
            a, b = torch.randn(k, n, d_in), torch.randn(k, d_in, d_out)
            c = torch.empty(k, n, d_out)
            inner = max(1, int(2e8 / (2 * k * n * d_in * d_out)))
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(inner):
                    torch.bmm(a, b, out=c)
                best = min(best, (time.perf_counter() - t0) / inner)
            out[n] = 2 * k * n * d_in * d_out / best / 1e9
    finally:
        torch.set_num_threads(threads)
    return out


# ------------------------------------------------------------------------------ agreement
def bitwise_check(config: SweepConfig, records: list[dict]) -> tuple[bool, list[str]]:
    """Sample groups rerun one seed at a time through the same code against the stacked records.

    A seed alone runs as a stack of two copies of itself (``seeds=(s, s)``): for a stack of one,
    torch routes some products of rank-1 shapes to other kernels (another summation order), while
    every stack of two or more does replica k's arithmetic exactly as in the full stack."""
    by_key = {r["key"]: r for r in records}
    ns = sorted({min(config.ns), max(config.ns)})
    ranks = sorted(set(config.ranks))
    sample = [g for g in config.groups() if g.n in ns and g.rank in (ranks[0], ranks[-1])]
    seeds = sorted({0, config.seeds - 1})
    ok, lines = True, []
    for group in sample:
        fields = set()
        for seed in seeds:
            alone = run_group(dataclasses.replace(group, seeds=(seed, seed)))
            for one in alone[:len(alone) // 2]:  # the first copy's records (the second is the same run)
                stacked = by_key[one["key"]]
                one = json.loads(json.dumps({k: v for k, v in one.items() if k != "_arrays"}))  # as stored
                fields |= {name for name, value in one.items() if name != "wall_time" and stacked.get(name) != value}
        ok &= not fields
        lines.append(f"     {group.mode.value:6s} rank {group.rank} n {group.n:4d}, seeds {seeds}: "
                     f"{'bitwise equal' if not fields else 'differ in ' + ', '.join(sorted(fields))} "
                     f"-> {'ok' if not fields else 'FAIL'}")
    return ok, lines


def code_agreement(records: list[dict], fields: dict) -> str:
    """For information: the loop's code lengths (sweep grid and chosen grid) against the harness's
    for the same runs; they differ where float rounding moved a trained value across a grid step."""
    same, total, gaps = 0, 0, []
    for r in records:
        mine = fields[(r["mode"], r["rank"], r["n"], r["seed"])]
        for name, theirs in (("code_length_bits", mine.get(r["bits"], {}).get("code_length_bits")),
                             ("adaptive_code_length_bits", mine["adaptive"]["adaptive_code_length_bits"])):
            total += 1
            same += theirs == r[name]
            gaps.append(abs(theirs - r[name]))
    return (f"   (info) code lengths, loop vs harness: {same} of {total} equal; median |difference| "
            f"{statistics.median(gaps):.1f} bits, largest {max(gaps):.1f} bits")


def loop_agreement(records: list[dict], looped: dict, config: SweepConfig) -> tuple[bool, str]:
    test_n = records[0]["test_n"]
    runs_differ, examples, means = 0, 0, defaultdict(lambda: [0.0, 0.0, 0])
    for r in records:
        losses = looped[(r["mode"], r["rank"], r["n"], r["seed"], r["bits"])]
        loop_error = float(losses.mean())
        if loop_error != r["test_error"]:
            runs_differ += 1
            examples += abs(round((loop_error - r["test_error"]) * test_n))
        m = means[(r["mode"], r["rank"], r["n"], r["bits"])]
        m[0] += r["test_error"]
        m[1] += loop_error
        m[2] += 1
    worst = max(abs(a - b) / c for a, b, c in means.values())
    ok = worst <= 0.05
    return ok, (f"   (2) loop vs harness, {len(records)} runs: {runs_differ} differ in test error "
                f"(net {examples} test examples of {test_n} in all: float rounding of two programs); "
                f"largest per-configuration mean difference {worst:.4f} (limit 0.05) -> {'ok' if ok else 'FAIL'}")


# ------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="harness workers, and processes of loop (c) (default: as infobound validate)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the three ways (default 1)")
    parser.add_argument("--quick", action="store_true", help="a small sweep (a smoke test, not a measurement)")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--self-test", action="store_true",
                        help="also run the agreement checks on deliberately wrong results (they must fail)")
    args = parser.parse_args()
    if args.workers < 1 or args.repeats < 1:
        sys.exit("bench_harness.py: --workers and --repeats must be >= 1")
    torch.set_num_threads(1)
    config = sweep_config(args.quick)
    task = get_task(config.task)
    task.base_model()  # pretrained (or loaded) and on disk before any clock starts
    groups = config.groups()
    runs = len(groups) * config.seeds
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"torch {torch.__version__}; workers {args.workers}, repeats {args.repeats}")
    print(f"sweep: task {config.task}, modes {','.join(m.value for m in config.modes)}, ranks "
          f"{','.join(map(str, config.ranks))}, n {','.join(map(str, config.ns))}, {config.seeds} seeds, bits "
          f"{','.join(map(str, config.bits))}, {config.steps} full-batch steps: {len(groups)} groups, {runs} runs")

    ways = {"harness": lambda: harness_way(config, args.workers),
            "loop, 1 process": lambda: loop_way(config, 1),
            f"loop, {args.workers} processes": lambda: loop_way(config, args.workers)}
    times, outputs, cert_times = defaultdict(list), {}, defaultdict(list)
    for round_ in range(args.repeats):
        order = list(ways) if round_ % 2 == 0 else list(ways)[::-1]
        for name in order:
            seconds, result = ways[name]()
            times[name].append(seconds)
            outputs[name] = result
            extra = ""
            if name != "harness":
                cert_times[name].append(result[2])
                extra = f" (its certificates {result[2]:.1f} s, summed over its processes)"
            print(f"   round {round_ + 1}: {name:18s} {seconds:8.2f} s{extra}", flush=True)
    flops = training_flops(config, task)
    peak = measured_peak(task, config.seeds, config.ns)
    best_peak = max(peak.values())
    print(f"training FLOPs counted (torch.utils.flop_counter on the programs themselves, matrix products, "
          f"forward and backward, all runs): harness {flops['harness']:.3e} (it forms each replica's merged "
          f"weight, so it computes that weight's whole gradient), loop {flops['loop']:.3e} (factored adapters)")
    print("peak measured now, torch.bmm of the first layer's stacked shapes, 1 thread: "
          + ", ".join(f"n={n}: {g:.1f} GFLOP/s" for n, g in peak.items()))
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in med.items():
        procs = 1 if name == "loop, 1 process" else args.workers
        executed = flops["harness" if name == "harness" else "loop"]
        rate = executed / seconds / 1e9
        print(f"   {name:18s} median {seconds:8.2f} s over {len(times[name])} round(s); "
              f"{rate:6.1f} GFLOP/s of its own products = {rate / procs:5.1f} per process = "
              f"{rate / procs / best_peak:5.1%} of the per-thread peak")
    useful = flops["loop"] / med["harness"] / 1e9 / args.workers
    print(f"   harness at the loop's FLOPs (the work the task needs, done the loop's way): {useful:.1f} GFLOP/s "
          f"per process = {useful / best_peak:.1%} of the peak")
    h, l1, ln = med["harness"], med["loop, 1 process"], med[f"loop, {args.workers} processes"]
    print(f"ratios, the same outputs (training, test errors and every certificate): loop-1 / harness = "
          f"{l1 / h:.2f}x (target >= 5), loop-{args.workers} / harness = {ln / h:.2f}x (target >= 3); "
          f"harness {h:.1f} s (target <= 25 s on 2 quiet cores)")
    c1 = statistics.median(cert_times["loop, 1 process"])
    cn = statistics.median(cert_times[f"loop, {args.workers} processes"]) / args.workers
    print(f"   the loop without its certificates (their seconds subtracted, over {args.workers} processes divided "
          f"by {args.workers}: an estimate), against the whole harness: loop-1 {(l1 - c1) / h:.2f}x, "
          f"loop-{args.workers} {(ln - cn) / h:.2f}x")
    if args.repeats > 1:
        pairs = [lo / ha for lo, ha in zip(times["loop, 1 process"], times["harness"])]
        print("   per-round loop-1 / harness: " + ", ".join(f"{p:.2f}" for p in pairs))

    if args.skip_agreement:
        return
    records = outputs["harness"]
    ok1, lines = bitwise_check(config, records)
    print("agreement:\n   (1) stacked runs vs the same runs alone through the same code (bitwise):")
    print("\n".join(lines))
    looped, loop_fields, _ = outputs["loop, 1 process"]
    ok2, line = loop_agreement(records, looped, config)
    print(line)
    print(code_agreement(records, loop_fields))
    other = outputs[f"loop, {args.workers} processes"][0]
    ok3 = looped.keys() == other.keys() and all(np.array_equal(a, other[k]) for k, a in looped.items())
    print(f"   (3) loop in 1 vs {args.workers} processes: {'identical' if ok3 else 'DIFFERENT'} -> {'ok' if ok3 else 'FAIL'}")
    caught = self_test(config, records, looped) if args.self_test else True
    if not (ok1 and ok2 and ok3 and caught):
        print("FAIL")
        sys.exit(1)
    print("PASS")


def self_test(config: SweepConfig, records: list[dict], looped: dict) -> bool:
    """The checks on deliberately wrong inputs: each must fail."""
    first = dict(records[0])
    wrong = [dict(r) for r in records]
    for r in wrong:  # one stacked record of the bitwise sample off by one test example
        if r["seed"] == 0 and r["n"] == min(config.ns) and r["rank"] == max(config.ranks):
            r["test_error"] += 1.0 / first["test_n"]
            break
    caught1 = not bitwise_check(config, wrong)[0]
    rng = np.random.default_rng(0)
    flipped = {k: np.where(rng.random(v.shape) < 0.1, 1 - v, v).astype(np.int8) for k, v in looped.items()}
    caught2 = not loop_agreement(records, flipped, config)[0]  # 10 % of test predictions changed
    print(f"   self-test: a record off by one test example {'caught' if caught1 else 'NOT caught'}; "
          f"10 % of the loop's test predictions flipped {'caught' if caught2 else 'NOT caught'}")
    return caught1 and caught2


if __name__ == "__main__":
    main()
