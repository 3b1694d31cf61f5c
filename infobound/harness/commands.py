"""The harness's subcommands: ``infobound validate`` and ``infobound report``.

Registered into the CLI's registry when ``infobound.cli`` loads; torch loads only when a command runs.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import _integer, _modes, _number, register
from ..errors import check_int
from .sweep import SweepConfig, default_workers

DEFAULTS = SweepConfig()


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(_integer(t) for t in text.split(",") if t.strip())
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"must be a comma list of integers ({exc})") from None


def _bits_list(text: str) -> tuple[int | None, ...]:
    """Bit widths, comma separated; ``none`` evaluates the unquantised model (bound not applicable)."""
    out = []
    for item in (t.strip().lower() for t in text.split(",") if t.strip()):
        out.append(None if item in ("none", "float") else _integer(item))
    return tuple(out)


def _csv(values) -> str:
    return ",".join("none" if v is None else str(getattr(v, "value", v)) for v in values)


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=DEFAULTS.task,
                        help=f"digits, teacher or linreg (default {DEFAULTS.task})")
    parser.add_argument("--out", default="infobound-out", metavar="DIR",
                        help="folder for records.sqlite, records.csv, summary.md and plots "
                             "(default infobound-out); rerunning skips finished runs")
    parser.add_argument("--modes", type=_modes, default=DEFAULTS.modes,
                        help=f"comma list of modes, or all (default {_csv(DEFAULTS.modes)})")
    parser.add_argument("--ranks", type=_int_list, default=DEFAULTS.ranks,
                        help=f"comma list of ranks (default {_csv(DEFAULTS.ranks)})")
    parser.add_argument("--n", type=_int_list, default=DEFAULTS.ns, dest="ns",
                        help=f"comma list of training-set sizes (default {_csv(DEFAULTS.ns)})")
    parser.add_argument("--seeds", type=_integer, default=DEFAULTS.seeds,
                        help=f"seeds per configuration; each redraws the training subset and the "
                             f"frozen factor (default {DEFAULTS.seeds})")
    parser.add_argument("--bits", type=_bits_list, default=DEFAULTS.bits,
                        help="comma list of bit widths for the trained parameters; 'none' also "
                             f"evaluates unquantised (default {_csv(DEFAULTS.bits)})")
    parser.add_argument("--clip", type=_number, default=DEFAULTS.clip,
                        help=f"quantisation grid is uniform on [-clip, clip] (default {DEFAULTS.clip})")
    parser.add_argument("--steps", type=_integer, default=DEFAULTS.steps,
                        help=f"full-batch Adam steps (default {DEFAULTS.steps})")
    parser.add_argument("--lr", type=_number, default=DEFAULTS.lr, help=f"Adam step size (default {DEFAULTS.lr})")
    parser.add_argument("--alpha", type=_number, default=None,
                        help="LoRA alpha; scaling is alpha/rank (default: alpha = rank, scaling 1)")
    parser.add_argument("--init", default=DEFAULTS.init,
                        help="frozen factor's draw: orthonormal, gaussian or kaiming (default orthonormal)")
    parser.add_argument("--targets", default=None,
                        help="comma list of module names to adapt (default: the task's hidden layers)")
    parser.add_argument("--workers", type=_integer, default=None,
                        help="processes training configurations in parallel, one thread each "
                             "(default: one per core, at most 4); records do not depend on it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_validate(args) -> int:
    from ..lora import FrozenInit
    from .validate import validate

    init = FrozenInit.parse(args.init).value
    targets = None if args.targets is None else tuple(t.strip() for t in args.targets.split(",") if t.strip())
    config = SweepConfig(task=args.task, modes=args.modes, ranks=args.ranks, ns=args.ns, seeds=args.seeds,
                         bits=args.bits, alpha=args.alpha, init=init, steps=args.steps, lr=args.lr,
                         clip=args.clip, targets=targets)
    workers = default_workers() if args.workers is None else check_int("--workers", args.workers, 1)
    result = validate(config, args.out, progress=not args.no_progress, workers=workers)
    counts = result["counts"]
    print(result["table"])
    print(f"\n{counts['groups']} configurations × {config.seeds} seeds: {counts['skipped']} already stored, "
          f"{counts['written']} records written; {result['records']} records in the report")
    _print_outputs(result)
    return 0


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="a folder written by infobound validate")


def _run_report(args) -> int:
    from .validate import write_report

    result = write_report(args.dir)
    print(result["table"])
    _print_outputs(result)
    return 0


def _print_outputs(result: dict) -> None:
    print(f"records: {result['csv']}\nsummary: {result['markdown']}")
    for path in result["plots"]:
        print(f"plot:    {path}")
    for reason in result["skipped_plots"]:
        print(f"skipped plot: {reason}", file=sys.stderr)


register("validate", "train small models with each adapter mode on offline data and set the measured "
         "gaps beside the seed bound", _validate_arguments, _run_validate)
register("report", "redraw the summary, CSV and plots of a validate folder from its stored records",
         _report_arguments, _run_report)

