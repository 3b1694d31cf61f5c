"""Certificates of a sweep group's runs: one vectorised batch against one call per run.

Both ways run in this one process, interleaved and repeated, on the same inputs: K runs with code
lengths like a sweep's (1,000-6,000 bits, so δ·2^-bits underflows and the binomial tail is solved in
log space) and training errors that are counts over n. The values of the two ways are compared.

    python benchmarks/bench_certificates.py [--runs 20] [--n 700] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from infobound.certificates import certificate, certificates_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--n", type=int, default=700)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    errors = [int(k) / args.n for k in rng.integers(0, args.n // 2, args.runs)]
    bits = [int(b) for b in rng.integers(1_000, 6_000, args.runs)]

    batch, loop = [], []
    for _ in range(args.repeats):  # interleaved: the two ways see the same machine load
        t0 = time.perf_counter()
        many = certificates_many(errors, args.n, bits, 0.05)
        batch.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        one = [certificate(q, args.n, b, 0.05) for q, b in zip(errors, bits)]
        loop.append(time.perf_counter() - t0)
    same = all((a.occam_kl, a.binomial, a.best) == (b.occam_kl, b.binomial, b.best) for a, b in zip(many, one))
    b, lo = statistics.median(batch), statistics.median(loop)
    print(f"{args.runs} certificates (occam_kl + binomial, each at δ and δ/2), n = {args.n}, "
          f"median of {args.repeats} interleaved repeats:")
    print(f"  one batch (certificates_many): {b * 1e3:8.1f} ms")
    print(f"  one call per run (certificate): {lo * 1e3:8.1f} ms")
    print(f"  ratio loop / batch: {lo / b:.1f}x; identical values: {same}")
    _bisections(errors, args.n, bits, args.repeats)


def _bisections(errors, n, bits, repeats) -> None:
    """The full-range bisection (``search="full"``, the old path) against the bracketed one, on the
    same inputs as a sweep group's certificates: occam_kl and binomial at δ and δ/2, interleaved."""
    from infobound.certificates import LN2, binomial_tail_bounds, kl_inverse_upper

    q = np.tile(np.array(errors), 2)
    b = np.tile(np.array(bits, dtype=np.float64), 2)
    deltas = np.repeat([0.05, 0.025], len(errors))
    c = (b * LN2 + np.log(1.0 / deltas)) / n
    k = np.round(q * n)
    times = {"full": [], "near": []}
    out = {}
    for _ in range(repeats):
        for way, search in (("full", "full"), ("near", "bracket")):
            t0 = time.perf_counter()
            out[way] = (kl_inverse_upper(q, c, search=search), binomial_tail_bounds(k, n, deltas, b, search=search))
            times[way].append(time.perf_counter() - t0)
    full, near = statistics.median(times["full"]), statistics.median(times["near"])
    same = all(np.array_equal(x, y) for x, y in zip(out["full"], out["near"]))
    print(f"kl inverse + binomial tail of {2 * len(errors)} (run, δ) pairs, median of {repeats} interleaved repeats:")
    print(f"  full-range bisection (old):     {full * 1e3:8.1f} ms")
    print(f"  bracket around an estimate (new): {near * 1e3:6.1f} ms")
    print(f"  speed-up {full / near:.1f}x; identical doubles: {same}")


if __name__ == "__main__":
    main()
