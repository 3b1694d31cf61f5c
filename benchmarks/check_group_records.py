"""Records of ``run_group`` before and after a change: capture them, then compare field by field.

    python benchmarks/check_group_records.py capture OUT.pkl [--groups 0 11 16 39]
    python benchmarks/check_group_records.py compare OLD.pkl NEW.pkl

``capture`` runs ``run_group`` (one thread) on the chosen groups of ``SweepConfig().groups()`` and
pickles the records, with each group's time after training (everything in ``run_group`` after
``train_stacked`` returns). ``compare`` checks every record field (``wall_time`` excepted) and every
array of ``record["_arrays"]`` for equality; certificate fields that differ are reported in ulps.
Exit status 1 if anything differs.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time

import numpy as np

DEFAULT_GROUPS = (0, 11, 16, 39, 10)  # lora r1 n100, lora r4 n700, b_only r1 n100, a_only r2 n700, lora r4 n400


def capture(path: str, groups) -> None:
    import torch

    torch.set_num_threads(1)
    from infobound.harness import sweep, train

    original = train.train_stacked
    ends = []

    def timed(*args, **kwargs):
        out = original(*args, **kwargs)
        ends.append(time.perf_counter())
        return out

    train.train_stacked = timed
    all_groups = sweep.SweepConfig().groups()
    out = {}
    for g in groups:
        group = all_groups[g]
        records = sweep.run_group(group)
        after = time.perf_counter() - ends[-1]
        out[g] = {"records": records, "after_training_s": after}
        print(f"group {g} ({group.mode.value} rank {group.rank} n {group.n}): "
              f"{len(records)} records, after training {after:.3f} s", flush=True)
    with open(path, "wb") as f:
        pickle.dump(out, f)


def _ulps(a: float, b: float) -> int:
    ia, ib = (np.array(x, dtype=np.float64).view(np.int64) for x in (a, b))
    return int(abs(int(ia) - int(ib)))


def compare(old_path: str, new_path: str) -> int:
    with open(old_path, "rb") as f:
        old = pickle.load(f)
    with open(new_path, "rb") as f:
        new = pickle.load(f)
    bad = 0
    fields = arrays = 0
    for g in [g for g in old if g in new]:
        ro, rn = old[g]["records"], new[g]["records"]
        if len(ro) != len(rn):
            print(f"group {g}: {len(ro)} records before, {len(rn)} after")
            bad += 1
            continue
        for a, b in zip(ro, rn):
            keys = (set(a) | set(b)) - {"wall_time", "_arrays"}
            for key in sorted(keys):
                fields += 1
                va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
                if type(va) is not type(vb) or va != vb:
                    if not (isinstance(va, float) and isinstance(vb, float) and np.isnan(va) and np.isnan(vb)):
                        extra = f" ({_ulps(va, vb)} ulps)" if isinstance(va, float) and isinstance(vb, float) else ""
                        print(f"group {g} key {a['key'][:10]} field {key}: {va!r} != {vb!r}{extra}")
                        bad += 1
            xa, xb = a["_arrays"], b["_arrays"]
            if set(xa) != set(xb):
                print(f"group {g}: array names differ {sorted(set(xa) ^ set(xb))}")
                bad += 1
            for name in set(xa) & set(xb):
                arrays += 1
                if xa[name].dtype != xb[name].dtype or not np.array_equal(xa[name], xb[name]):
                    print(f"group {g} key {a['key'][:10]} array {name} differs")
                    bad += 1
        print(f"group {g}: after training {old[g]['after_training_s']:.3f} s -> {new[g]['after_training_s']:.3f} s")
    print(f"compared {fields} fields and {arrays} arrays: {bad} differences")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("capture")
    c.add_argument("out")
    c.add_argument("--groups", type=int, nargs="+", default=list(DEFAULT_GROUPS))
    d = sub.add_parser("compare")
    d.add_argument("old")
    d.add_argument("new")
    args = parser.parse_args()
    if args.what == "capture":
        capture(args.out, args.groups)
    else:
        sys.exit(compare(args.old, args.new))


if __name__ == "__main__":
    main()
