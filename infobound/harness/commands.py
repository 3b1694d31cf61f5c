"""The harness's subcommands: ``infobound validate`` and ``infobound report``.

Registered into the CLI's registry (``infobound.cliargs``) when ``infobound.cli`` loads; torch loads
only when a command runs, after ``extras.require`` has made sure it is installed.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ..cliargs import bits_list, int_list, integer_type, modes, number_type, register, warn
from ..spec import Mode
from .executors import KINDS as EXECUTORS
from .sweep import KINDS, MAX_MASKS, SPLITS, MAX_SEEDS, MAX_STEPS, MAX_SUPERSAMPLES, SweepConfig, default_workers

DEFAULTS = SweepConfig()
CMI_NS = (100, 250, 500)
"""Default pairs per supersample of ``--kind cmi`` (digits holds at most 539 pairs it never pretrained on)."""
MAX_WORKERS = 64


def bound_kinds(text: str) -> tuple[str, ...]:
    """A comma list of bound kinds for the tightness table, or ``all``."""
    from .tightness import BOUND_KINDS

    if text.strip().lower() == "all":
        return BOUND_KINDS
    items = [t.strip().lower() for t in text.split(",")]
    bad = [t for t in items if t not in BOUND_KINDS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"must be a comma list of {', '.join(BOUND_KINDS)} (or all); got {bad[0]!r}"
                                         if bad else f"must name at least one of {', '.join(BOUND_KINDS)}")
    return tuple(dict.fromkeys(items))


def clip_value(text: str) -> float | str:
    """``--clip``: a finite number > 0, or ``auto`` (derived before training: ``sweep.auto_clip``)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return number_type(0.0, open_low=True)(text)
    except argparse.ArgumentTypeError:
        shown = text if len(text) <= 40 else text[:20] + "..." + text[-8:]
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 or auto, got {shown!r}") from None


def _csv(values) -> str:
    return ",".join("none" if v is None else str(getattr(v, "value", v)) for v in values)


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=DEFAULTS.task,
                        help=f"digits, teacher, linreg or mnist; NAME:SHIFT sets a shift, e.g. mnist:permute, "
                             f"digits:flip; NAME/MODEL:SHIFT also a model, e.g. mnist/vit:permute; "
                             f"local:TASK_FILE fine-tunes your transformers model on your labelled CSV or "
                             f"folder (a JSON file naming both; see the docs' harness page); a comma "
                             f"list runs each task into its own subfolder of --out and writes comparison.md, "
                             f"the claims side by side (default {DEFAULTS.task})")
    parser.add_argument("--model", default=None,
                        help="the task's network: mnist has mlp (default) and vit (a small vision "
                             "transformer, LoRA on its attention q/v projections); same as NAME/MODEL")
    parser.add_argument("--split", default="auto", choices=SPLITS,
                        help="fixed: every seed tested on the task's one test set; per_seed: every seed "
                             "redraws its own training and test sets from the data never pretrained on, "
                             "so the intervals over seeds cover the split too; auto: per_seed where the "
                             "task allows it (digits, mnist) and --kind seeds, else fixed (default auto)")
    parser.add_argument("--tune-lrs", default=None, metavar="LIST",
                        help="comma list of learning-rate candidates: each configuration picks its lr "
                             "(and steps, with --tune-steps) on a validation split of its training data, "
                             "never the test set; every bound pays log2(candidates) bits for the choice")
    parser.add_argument("--tune-steps", default=None, metavar="LIST",
                        help="comma list of step-count candidates (default: --steps alone)")
    parser.add_argument("--validation-fraction", type=number_type(0.0, 1.0, open_low=True, open_high=True),
                        default=None, help="share of each run's training set held out for the choice "
                                           f"(default {DEFAULTS.validation_fraction}; tuning only)")
    parser.add_argument("--batch-size", type=integer_type(1, MAX_STEPS), default=None,
                        help="minibatch size of fine-tuning (default: full batch; a group with n at "
                             "most this trains full batch)")
    parser.add_argument("--out", default="infobound-out", metavar="DIR",
                        help="folder for records.sqlite, records.csv, summary.md and plots "
                             "(default infobound-out); rerunning skips finished runs")
    parser.add_argument("--modes", type=modes, default=DEFAULTS.modes,
                        help=f"comma list of modes, or all (default {_csv(DEFAULTS.modes)})")
    parser.add_argument("--ranks", type=int_list(1), default=None,
                        help=f"comma list of ranks (default {_csv(DEFAULTS.ranks)})")
    parser.add_argument("--n", type=int_list(1), default=None, dest="ns",
                        help=f"comma list of training-set sizes (default {_csv(DEFAULTS.ns)}; with "
                             f"--kind cmi, pairs per supersample, default {_csv(CMI_NS)})")
    parser.add_argument("--seeds", type=integer_type(1, MAX_SEEDS), default=DEFAULTS.seeds,
                        help=f"seeds per configuration; each redraws the training subset and the "
                             f"frozen factor (default {DEFAULTS.seeds})")
    parser.add_argument("--bits", type=bits_list, default=DEFAULTS.bits,
                        help="comma list of bit widths for the trained parameters; 'none' also "
                             f"evaluates unquantised (default {_csv(DEFAULTS.bits)})")
    parser.add_argument("--clip", type=clip_value, default=None,
                        help=f"quantisation grid is uniform on [-clip, clip]: a number > 0, or auto for "
                             f"the most Adam can move an entry in --steps steps of --lr, so that no "
                             f"trained entry is clipped (default {DEFAULTS.clip})")
    parser.add_argument("--steps", type=integer_type(1, MAX_STEPS), default=DEFAULTS.steps,
                        help=f"full-batch Adam steps (default {DEFAULTS.steps})")
    parser.add_argument("--lr", type=number_type(0.0, open_low=True), default=DEFAULTS.lr,
                        help=f"Adam step size (default {DEFAULTS.lr})")
    parser.add_argument("--alpha", type=number_type(0.0, open_low=True), default=None,
                        help="LoRA alpha; scaling is alpha/rank (default: alpha = rank, scaling 1)")
    parser.add_argument("--init", default=DEFAULTS.init,
                        help="frozen factor's draw: orthonormal, gaussian or kaiming (default orthonormal)")
    parser.add_argument("--targets", default=None,
                        help="comma list of module names to adapt (default: the task's hidden layers)")
    parser.add_argument("--device", default=DEFAULTS.device, metavar="DEVICE",
                        help="where the stacked training runs: cpu, or cuda (cuda:N) where torch sees a GPU; "
                             "recorded in every record (default cpu; with cuda, --workers defaults to 1)")
    parser.add_argument("--workers", type=integer_type(1, MAX_WORKERS), default=None,
                        help="processes training configurations in parallel, one thread each "
                             "(default: one per core, at most 4); records do not depend on it")
    parser.add_argument("--executor", default="processes", choices=EXECUTORS,
                        help="where the workers run: processes of this machine, a dask cluster (a local one, "
                             "or --dask-address) or submitit jobs (SLURM where available, else local "
                             "subprocesses; files in --submitit-folder); dask and submitit need the cluster "
                             "extra (default processes); records do not depend on it")
    parser.add_argument("--dask-address", default=None, metavar="ADDRESS",
                        help="scheduler of an existing dask cluster, e.g. tcp://host:8786 (--executor dask; "
                             "default: a local cluster of --workers processes)")
    parser.add_argument("--submitit-folder", default=None, metavar="DIR",
                        help="folder of the submitit jobs' files and logs, visible to the jobs "
                             "(--executor submitit; default OUT/submitit)")
    parser.add_argument("--kind", default=DEFAULTS.kind, choices=KINDS,
                        help="seeds: each configuration once per seed on a fresh training subset; cmi: "
                             "the supersample suite (k1 supersamples of n pairs x k2 masks) for the "
                             "conditional-MI bounds (default seeds)")
    parser.add_argument("--supersamples", type=integer_type(1, MAX_SUPERSAMPLES), default=None,
                        help=f"k1, supersamples per configuration, --kind cmi (default {DEFAULTS.supersamples})")
    parser.add_argument("--masks", type=integer_type(2, MAX_MASKS), default=None,
                        help=f"k2, masks per supersample, trained as one stack, --kind cmi (default {DEFAULTS.masks})")
    _bounds_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _bounds_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bounds", type=bound_kinds, default=None,
                        help="comma list of bounds for the tightness table: seed, fast, cert, cmi "
                             "(default: every one the stored runs allow)")


def _inert_warnings(args) -> None:
    """Options that would do nothing in this sweep: said, not silently ignored."""
    rank_modes = [m for m in args.modes if m is not Mode.FULL]
    if args.ranks is not None and not rank_modes:
        warn("--ranks does nothing here: full fine-tuning has no rank")
    if args.clip is not None and all(b is None for b in args.bits):
        warn("--clip does nothing here: with --bits none no parameter is quantised")
    if args.alpha is not None and not rank_modes:
        warn("--alpha does nothing here: full fine-tuning has no adapter scaling")
    if args.kind != "cmi":
        for option in ("supersamples", "masks"):
            if getattr(args, option) is not None:
                warn(f"--{option} does nothing here: it applies to --kind cmi")
    elif args.seeds != DEFAULTS.seeds:
        warn("--seeds does nothing here: a cmi sweep runs --supersamples x --masks runs per configuration")


def _task_name(task: str, model: str | None) -> str:
    """``--task`` with ``--model`` folded in as ``NAME/MODEL[:SHIFT]``."""
    if model is None:
        return task
    from .tasks import split_task_name

    if split_task_name(task)[1] is not None:
        raise InputError(f"--model {model!r} and --task {task!r} both name a model; give one")
    head, colon, shift = task.strip().partition(":")
    return f"{head}/{model.strip()}" + (f":{shift}" if colon else "")


def _run_validate(args) -> int:
    from ..extras import require

    require("infobound validate")  # before anything is read or written
    from .validate import check_bounds, check_config

    _inert_warnings(args)
    ns = args.ns or (CMI_NS if args.kind == "cmi" else DEFAULTS.ns)
    tasks = [t.strip() for t in args.task.split(",")]
    if any(not t for t in tasks) or len(set(tasks)) < len(tasks):
        raise InputError(f"--task must be a task name or a comma list of distinct task names, got {args.task!r}")
    from .tuning import parse_lrs, parse_steps

    tune_lrs = None if args.tune_lrs is None else parse_lrs(args.tune_lrs)
    tune_steps = None if args.tune_steps is None else parse_steps(args.tune_steps)
    if args.validation_fraction is not None and tune_lrs is None and tune_steps is None:
        warn("--validation-fraction does nothing here: it applies with --tune-lrs or --tune-steps")
    configs = []
    for name in tasks:  # every task checked before any training
        config = SweepConfig(task=_task_name(name, args.model), modes=args.modes, ranks=args.ranks or DEFAULTS.ranks,
                             ns=ns, seeds=args.seeds, bits=args.bits, alpha=args.alpha, init=args.init,
                             steps=args.steps, lr=args.lr, clip=DEFAULTS.clip if args.clip is None else args.clip,
                             targets=args.targets, kind=args.kind,
                             supersamples=args.supersamples or DEFAULTS.supersamples,
                             masks=args.masks or DEFAULTS.masks, split=args.split, batch_size=args.batch_size,
                             device=args.device,
                             tune_lrs=tune_lrs, tune_steps=tune_steps,
                             validation_fraction=args.validation_fraction or DEFAULTS.validation_fraction)
        check_bounds(config, args.bounds)
        configs.append(check_config(config)[0])
    if args.workers is not None:
        workers = args.workers
    else:  # one process per core on cpu; a GPU is best fed by one process
        workers = default_workers() if all(c.device == "cpu" for c in configs) else 1
    if len(configs) == 1:
        with _executor(args, workers, args.out) as executor:
            _validate_one(args, configs[0], args.out, workers, executor)
        return 0
    from pathlib import Path

    from .compare import format_comparison, write_comparison

    folders = []
    with _executor(args, workers, args.out) as executor:  # one cluster for every task
        for config in configs:
            folder = Path(args.out) / task_folder(config.task)
            print(f"\n=== task {config.task}: {folder}")
            _validate_one(args, config, folder, workers, executor)
            folders.append(folder)
    path, rows = write_comparison(folders, Path(args.out) / "comparison.md")
    print("\n" + format_comparison(rows))
    print(f"comparison: {path}")
    return 0


def task_folder(task: str) -> str:
    """The subfolder of a task's sweep when ``--task`` lists several: ``mnist/vit:permute`` -> ``mnist-vit_permute``."""
    from ..files import safe_name

    return safe_name(task)


def _validate_one(args, config: SweepConfig, out, workers: int, executor) -> None:
    from .validate import clipping_warning, validate

    result = validate(config, out, progress=not args.no_progress, workers=workers, executor=executor,
                      on_plan=lambda plan: _print_plan(plan, config), bounds=args.bounds)
    counts = result["counts"]
    print(result["table"])
    print("\n" + result["tightness_table"])
    runs = (f"configurations × {config.seeds} seeds" if config.kind == "seeds" else
            f"groups (a supersample of one configuration each) × {config.masks} masks")
    print(f"\n{counts['groups']} {runs}: {counts['skipped']} already stored, "
          f"{counts['written']} records written; {result['records']} records in the report")
    _print_outputs(result)
    line = clipping_warning(result)
    if line:
        warn(line)


def _executor(args, workers: int, out):
    """The executor of ``--executor`` as a context manager (None inside for processes: ``--workers``)."""
    import contextlib
    from pathlib import Path

    from .executors import make_executor

    for option, kind in (("dask_address", "dask"), ("submitit_folder", "submitit")):
        if getattr(args, option) is not None and args.executor != kind:
            warn(f"--{option.replace('_', '-')} does nothing here: it applies to --executor {kind}")
    if args.executor == "dask":
        return make_executor("dask", workers, **({} if args.dask_address is None else {"address": args.dask_address}))
    if args.executor == "submitit":
        folder = Path(out) / "submitit" if args.submitit_folder is None else args.submitit_folder
        return make_executor("submitit", workers, folder=folder)
    return contextlib.nullcontext()


def _print_plan(plan, config: SweepConfig) -> None:
    print(plan.describe(), flush=True)
    if config.clip_rule == "auto" and any(b is not None for b in config.bits):
        print(f"quantisation grid: [-{config.clip:g}, {config.clip:g}] (--clip auto: the most {config.steps} "
              f"Adam steps of {config.lr:g} can move an entry from its init)", flush=True)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="a folder written by infobound validate (one holding the subfolders of --task A,B also rewrites its comparison.md)")
    parser.add_argument("--skip-damaged", action="store_true",
                        help="report the readable records of a store some of whose records are damaged")
    _bounds_argument(parser)


def _run_report(args) -> int:
    from pathlib import Path

    from .store import RunStore
    from .validate import write_report

    folder = Path(args.dir)
    try:  # a folder of `validate --task A,B` sweeps: one store per subfolder, none at the top
        single = (folder / RunStore.FILENAME).is_file() or not folder.is_dir()
        subfolders = [] if single else sorted(p.parent for p in folder.glob(f"*/{RunStore.FILENAME}"))
    except OSError:  # a name the file system refuses: write_report gives the clear error
        single, subfolders = True, []
    if single or not subfolders:
        result = write_report(args.dir, skip_damaged=args.skip_damaged, bounds=args.bounds)
        print(result["table"])
        print("\n" + result["tightness_table"])
        _print_outputs(result)
        return 0
    from .compare import format_comparison, write_comparison  # a folder of `validate --task A,B` sweeps

    for sub in subfolders:
        print(f"\n=== {sub}")
        result = write_report(sub, skip_damaged=args.skip_damaged, bounds=args.bounds)
        print(result["table"])
        _print_outputs(result)
    path, rows = write_comparison(subfolders, folder / "comparison.md")
    print("\n" + format_comparison(rows))
    print(f"comparison: {path}")
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
