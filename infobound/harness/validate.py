"""``validate``: check everything, run a sweep into a folder, and write the report; ``report``: redraw it.

A folder holds one sweep's records (``records.sqlite``), and what is derived from them:
``records.csv``, ``summary.md`` and the plots. Everything derived is rewritten from the stored records,
so ``infobound report DIR`` reproduces it without training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write
from ..presets import parse_targets, select_layers
from ..spec import Mode, check_rank
from ..validation import check_instance, check_int, check_names, check_path
from .sweep import SweepConfig, SweepPlan, linear_layers, plan_sweep

SETTINGS_FILE = "sweep.json"
# Settings that change what a record means without being part of the report's configuration columns:
# one folder holds one value of each, so the report never averages across them.
FOLDER_WIDE = ("kind", "task", "steps", "lr", "clip", "targets", "split", "batch_size", "tune_lrs", "tune_steps_grid")
MAX_WORKERS = 256


def check_config(config: SweepConfig) -> tuple[SweepConfig, object]:
    """The checks of ``config`` against its task, reading and writing no file: returns the config
    in canonical form (task name, split resolved, the task default targets as ``None``, names in
    model order) and the task."""
    from .tasks import canonical_task_name, get_task

    config = check_instance("config", config, SweepConfig, "a SweepConfig")
    task = get_task(config.task)  # unknown task, model or shift: InputError listing the allowed ones
    config = replace(config, task=canonical_task_name(config.task))
    config = replace(config, split=config.resolved_split())
    if config.split == "per_seed" and not task.resplits:
        task.resplit(1, 0)  # the task's own refusal, naming the tasks that can
    if config.kind == "cmi":
        if task.max_pairs == 0:
            raise InputError(f"kind 'cmi' needs a task with a loss in [0, 1] and supersamples (digits, "
                             f"teacher); task {config.task} has loss {task.loss_kind}")
        too_many = [n for n in config.ns if n > task.max_pairs]
        if too_many:
            raise InputError(f"n must be at most {task.max_pairs} pairs for a supersample of task "
                             f"{config.task} (2n distinct examples it never pretrained on), got {too_many[0]}")
    too_many = [n for n in config.ns if n > task.max_n]
    if config.kind == "seeds" and too_many:
        raise InputError(f"n must be at most {task.max_n} for task {config.task} (the size of its "
                         f"target training pool), got {too_many[0]}")
    if config.candidates() is not None:
        from .tuning import validation_split

        for n in config.ns:  # the validation split must leave examples on both sides
            validation_split(n, config.validation_fraction)
    all_layers = _task_layers(task)
    default = select_layers(all_layers, task.default_targets, model=f"task {config.task}")
    targets = config.targets or task.default_targets
    layers = select_layers(all_layers, targets, model=f"task {config.task}")
    config = replace(config, targets=_canonical_targets(layers, targets, default))
    if any(m is not Mode.FULL for m in config.modes):
        check_rank(max(config.ranks), layers)  # names the layer that limits the rank
    return config, task


def _task_layers(task) -> list:
    """The task network's ``nn.Linear`` layers, read from an untrained copy where the task has one
    (no pretraining just to check names and shapes); the global torch RNG is left untouched."""
    import torch

    if not hasattr(task, "architecture"):
        return linear_layers(task.base_model())
    with torch.random.fork_rng(devices=[]):
        return linear_layers(task.architecture())


def check_sweep(config: SweepConfig, out) -> tuple[SweepConfig, object, SweepPlan]:
    """Every check that can fail, before any training or any file is written.

    Returns the config in canonical form (``check_config``), the opened ``RunStore`` and the
    sweep's plan (size, estimate).
    """
    from .store import RunStore

    out = check_path("out", out)
    config, task = check_config(config)
    all_layers = _task_layers(task)
    _check_folder(out)
    RunStore.check_writable(out)
    store = RunStore(out)  # a foreign, damaged or incompatible store: InputError, file untouched
    try:
        _check_same_settings(store, config)
        plan = plan_sweep(config, store, all_layers, int(task.test_set()[0].shape[0]), 1,
                          tokens=task.tokens_per_example, default_batch=task.default_batch_size)
    except BaseException:
        store.close()
        raise
    return config, store, plan


def check_bounds(config: SweepConfig, bounds) -> tuple[str, ...] | None:
    """The tightness table's bound kinds, checked against what the sweep's records will allow."""
    from .tasks import get_task
    from .tightness import BOUND_KINDS

    if bounds is None:
        return None
    names = check_names("bounds", bounds)
    unknown = [b for b in names if b not in BOUND_KINDS]
    if unknown:
        raise InputError(f"bounds must name bound kinds from {', '.join(BOUND_KINDS)}, got {unknown[0]!r}")
    zero_one = get_task(config.task).loss_kind == "zero_one"
    quantised = any(b is not None for b in config.bits)
    need = {"seed": (zero_one and quantised, "quantised parameters (--bits) and a 0-1 loss"),
            "fast": (zero_one and quantised, "quantised parameters (--bits) and a 0-1 loss"),
            "cert": (zero_one and quantised, "quantised parameters (--bits) and a 0-1 loss"),
            "cmi": (config.kind == "cmi", "the supersample suite (--kind cmi)")}
    if config.kind == "cmi":
        need.update({k: (False, "a seed sweep (--kind seeds)") for k in ("seed", "fast", "cert")})
    for name in names:
        ok, what = need[name]
        if not ok:
            raise InputError(f"bounds: {name!r} needs {what}; this sweep cannot give it")
    return tuple(b for b in BOUND_KINDS if b in names)


def validate(config: SweepConfig, out, *, progress: bool = True, workers: int = 1, executor=None,
             on_plan=None, bounds=None) -> dict:
    """Run the sweep (skipping stored runs) and write the report of every record in the folder.

    ``workers`` > 1 runs groups in that many processes (ignored when an ``executor`` is given);
    ``on_plan(plan)`` is called with the sweep's size and time estimate before training starts.
    Ctrl-C stops the workers and raises ``Interrupted``: every finished group stays stored.
    """
    from .sweep import process_pool, run_sweep, stop_workers

    workers = check_int("workers", workers, 1, MAX_WORKERS)
    if executor is not None and not callable(getattr(executor, "map", None)):
        raise InputError(f"executor must have a map(fn, iterable) method (a concurrent.futures "
                         f"executor), got {type(executor).__name__}")
    if on_plan is not None and not callable(on_plan):
        raise InputError(f"on_plan must be callable or None, got {type(on_plan).__name__}")
    bounds = check_bounds(check_instance("config", config, SweepConfig, "a SweepConfig"), bounds)  # nothing written yet
    config, store, plan = check_sweep(config, out)
    out = Path(out)
    with store:
        plan = replace(plan, workers=1 if executor is None and workers == 1 else workers)
        if on_plan is not None:
            on_plan(plan)
        _write_json(out / SETTINGS_FILE, _settings(config))
        if executor is None and workers > 1 and plan.groups_todo > 0:
            pool = process_pool(min(workers, plan.groups_todo))
            try:
                counts = run_sweep(config, store, executor=pool, progress=progress)
            except BaseException:
                stop_workers(pool)
                raise
            pool.shutdown()
        else:
            counts = run_sweep(config, store, executor=executor, progress=progress)
        records = store.records()  # the whole folder, as `infobound report DIR` sees it
        pair_losses = _pair_losses(store, records)
    result = write_report(out, records, bounds=bounds, pair_losses=pair_losses)
    result["counts"] = counts
    result["plan"] = plan
    return result


def _pair_losses(store, records) -> dict | None:
    """{key: (losses (n, 2), mask (n,))} of the stored supersample runs; None when there are none."""
    keys = [r["key"] for r in records if r.get("kind") == "cmi"]
    if not keys:
        return None
    arrays = store.arrays_many(keys, names=("pair_losses", "mask"))
    return {k: (a["pair_losses"], a["mask"]) for k, a in arrays.items() if {"pair_losses", "mask"} <= set(a)}


def write_report(out, records=None, *, skip_damaged: bool = False, bounds=None, pair_losses=None) -> dict:
    """CSV, Markdown summary and plots from ``records`` (default: every record stored in ``out``).

    The folder's writability is checked first and everything is computed before the first file is
    written, so a refusal leaves the folder as it was. ``skip_damaged`` reports the readable records of a store
    some of whose records are damaged (they are listed in the summary's notes).
    """
    from . import figures, report
    from .store import RunStore, open_for_reading
    from .tightness import format_tightness, tightness_markdown, tightness_rows

    out = check_path("DIR", out) if records is None else check_path("out", out)
    notes = []
    if records is None:
        if not out.is_dir():
            raise InputError(f"DIR must be a folder written by infobound validate; {str(out)!r} is not a folder")
        if not (out / RunStore.FILENAME).is_file():
            raise InputError(f"DIR must be a folder written by infobound validate; "
                             f"no {RunStore.FILENAME} in {str(out)!r}")
        RunStore.check_writable(out)  # a read-only folder: one clear error, nothing touched
        with open_for_reading(out) as store:
            records, damaged = store.readable_records() if skip_damaged else (store.records(), [])
            if bounds is not None and "cmi" in check_names("bounds", bounds) and not store.has_arrays:
                store.arrays_many([])  # schema 1: the clear error that it holds no per-example losses
            pair_losses = _pair_losses(store, records) if store.has_arrays else None
        if damaged:
            notes.append(f"{len(damaged)} damaged record(s) left out (store rows {', '.join(map(str, damaged))})")
    else:
        RunStore.check_writable(out)
    if not records:
        raise InputError(f"DIR holds no finished runs: {str(out)!r}")
    summary = report.summarize(records)
    summary.notes.extend(notes)
    quantised = quantisation_rows(records)
    clipping = [q for q in quantised if q["clipped_mean"] is not None and q["clipped_mean"] > CLIP_NOTE_FRACTION]
    summary.notes.extend(clipping_note(q) for q in clipping)
    tight = tightness_rows(records, pair_losses=pair_losses, bounds=bounds)
    meta = {"title": f"infobound validate: task {records[0]['task']}", **_describe_setting(out, records[0]),
            "sections": [_linreg_table(records), tightness_markdown(tight), _asymmetry_section(out, records, summary.notes)]}
    meta["sections"].append(quantisation_markdown(quantised))
    meta["sections"].append(tuning_markdown(records))
    csv_path = report.write_csv(records, out / "records.csv")
    plots = figures.write_plots(records, out, tightness=tight)
    meta["plots"] = [str(p) for p in plots]
    md_path = report.write_markdown(summary, out / "summary.md", meta)
    return {"summary": summary, "table": report.format_verdict_table(summary), "tightness": tight,
            "tightness_table": format_tightness(tight), "csv": csv_path,
            "markdown": md_path, "plots": list(plots), "skipped_plots": list(plots.skipped),
            "records": len(records), "quantisation": quantised, "clipping": clipping}


def tuning_markdown(records: list[dict]) -> str:
    """The "Tuning" section: per configuration, the lr and steps chosen on the validation split, the
    validation error of every candidate and the bits every bound paid ("" when nothing was tuned)."""
    groups: dict[tuple, dict] = {}
    for r in records:
        if r.get("tune_lr") is not None:
            groups.setdefault((r["task"], r["mode"], r["rank"], r["n"]), r)
    if not groups:
        return ""
    first = next(iter(groups.values()))
    lines = ["## Tuning: learning rate and steps chosen on a validation split", "",
             f"Each configuration chose one (lr, steps) from the grid lr ∈ {{{first['tune_lrs']}}} × steps ∈ "
             f"{{{first['tune_steps_grid']}}} ({first['tune_candidates']} candidates): every run held out "
             f"the last {first['tune_n_val']} of its n training examples (validation fraction), trained "
             "each candidate on the rest, and the candidate with the lowest mean validation 0-1 error "
             "over the configuration's runs (ties: lower validation loss, smaller lr, fewer steps) was "
             "then trained on all n. The test set never entered the choice. Every bound and certificate "
             f"of these runs pays log2({first['tune_candidates']}) = {first['tune_bits']:.4g} bits for it "
             "(one choice shared by the runs of a configuration, so they are not independent draws of a "
             "fixed algorithm: the intervals over seeds are conditional on the choice).", "",
             "| task | mode | rank | n | n fit / val | chosen lr | chosen steps | validation error of the choice | "
             "validation errors (lr-major grid order) |", "|---|---|---|---|---|---|---|---|---|"]
    for (task, mode, rank, n), r in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        errors = [float(v) for v in str(r["tune_validation_errors"]).split(",")]
        lrs = [float(v) for v in str(r["tune_lrs"]).split(",")]
        steps = [int(v) for v in str(r["tune_steps_grid"]).split(",")]
        chosen = lrs.index(float(r["tune_lr"])) * len(steps) + steps.index(int(r["tune_steps"]))
        lines.append(f"| {task} | {mode} | {'—' if mode == Mode.FULL.value else rank} | {n} | "
                     f"{r['tune_n_fit']} / {r['tune_n_val']} | {r['tune_lr']:g} | {r['tune_steps']} | "
                     f"{errors[chosen]:.4f} | "
                     + ", ".join(f"{e:.3f}" for e in errors) + " |")
    return "\n".join(lines) + "\n"


def _asymmetry_section(out: Path, records: list[dict], notes: list[str]) -> str:
    """The asymmetry prediction of the stored LoRA runs ("" when there are none to analyse)."""
    from ..extras import HARNESS, missing
    from .store import open_for_reading

    lora = [r["key"] for r in records if r.get("mode") == "lora" and r.get("code_length_bits") is not None]
    if not lora or not (out / "records.sqlite").is_file():
        return ""
    if missing(HARNESS):
        notes.append("the asymmetry prediction needs the harness extra (torch), which is not installed")
        return ""
    from .asymmetry import asymmetry_markdown, asymmetry_rows
    from .tasks import get_task

    with open_for_reading(out) as store:
        if not store.has_arrays:
            return ""
        arrays = store.arrays_many(lora)
    rows = asymmetry_rows(records, arrays, get_task(records[0]["task"]))
    return asymmetry_markdown(rows) if rows else ""


CLIP_NOTE_FRACTION = 0.01
"""A configuration whose runs have more than this share of trained entries clipped (on average) is
named in the notes, and ``infobound validate`` warns."""


def quantisation_rows(records) -> list[dict]:
    """Per quantised configuration (task, mode, rank, n, bits, alpha, init, clip): what rounding did.

    ``runs``; ``clipped_mean`` / ``clipped_max``: the share of a run's trained entries with
    |x| > clip, mean and max over the runs (None for records that do not hold it);
    ``trained_max_abs``: the largest |trained entry| of any run (None if not recorded); for a 0-1
    loss ``test_error_trained`` / ``test_error_quantised``: mean test error of the unquantised and
    the quantised model over the runs that hold both, and ``cost`` their difference (else None).
    """
    from .stats import CONFIG_KEYS, group_records

    quantised = [r for r in records if r.get("bits") is not None]
    rows = []
    for key, runs in group_records(quantised, by=CONFIG_KEYS + ("clip",)).items():
        row = dict(zip(CONFIG_KEYS + ("clip",), key))
        fractions = [float(r["clipped_fraction"]) for r in runs if r.get("clipped_fraction") is not None]
        largest = [float(r["trained_max_abs"]) for r in runs if r.get("trained_max_abs") is not None]
        paired = [(float(r["unquantised_test_error"]), float(r["test_error"])) for r in runs
                  if r.get("unquantised_test_error") is not None and r.get("test_error") is not None]
        trained = sum(a for a, _ in paired) / len(paired) if paired else None
        after = sum(b for _, b in paired) / len(paired) if paired else None
        row.update(clip_rule=runs[0].get("clip_rule") or "fixed", runs=len(runs),
                   clipped_mean=sum(fractions) / len(fractions) if fractions else None,
                   clipped_max=max(fractions) if fractions else None,
                   trained_max_abs=max(largest) if largest else None,
                   test_error_trained=trained, test_error_quantised=after,
                   cost=None if trained is None else after - trained)
        rows.append(row)
    return rows


def _config_label(row: dict) -> str:
    rank = "" if row["mode"] == Mode.FULL.value else f" rank {row['rank']}"
    return f"{row['task']} {row['mode']}{rank}, n={row['n']}, {row['bits']} bits"


def clipping_note(row: dict) -> str:
    """The summary's note for a configuration that clips more than ``CLIP_NOTE_FRACTION``."""
    return (f"{_config_label(row)}: {row['clipped_mean']:.1%} of trained entries clipped at "
            f"±{row['clip']:g} (mean over {row['runs']} runs; up to {row['clipped_max']:.1%} in one); "
            "the quantised model differs from the trained one: raise --clip or use --clip auto")


def clipping_warning(result: dict) -> str | None:
    """One line for ``infobound validate`` when any configuration clips too much (else None)."""
    clipping = result.get("clipping") or []
    if not clipping:
        return None
    worst = max(clipping, key=lambda q: q["clipped_mean"])
    return (f"{len(clipping)} of {len(result['quantisation'])} quantised configurations have more than "
            f"{CLIP_NOTE_FRACTION:.0%} of trained entries clipped at ±{worst['clip']:g} (worst: "
            f"{_config_label(worst)}, {worst['clipped_mean']:.1%}); their quantised models differ from "
            f"the trained ones (Quantisation in {result['markdown']}): raise --clip or use --clip auto")


def quantisation_markdown(rows: list[dict]) -> str:
    """The report's "Quantisation" section: clipped entries and the test error rounding costs."""
    lines = ["## Quantisation", ""]
    if not rows:
        return "\n".join(lines + ["No run was quantised (bits none only)."]) + "\n"
    clips = sorted({(q["clip"], q["clip_rule"]) for q in rows})
    auto = "--clip auto: the most Adam can move an entry from its init in these steps, so none is clipped"
    said = "; ".join(f"c = {c:g} ({auto if rule == 'auto' else 'fixed'})" for c, rule in clips)
    lines += [f"Trained parameters are rounded after training to 2^bits points on [−c, c], {said}. An "
              "entry with |x| > c is clipped to the nearer end: the evaluated model then differs from the "
              "trained one by more than rounding. *Clipped*: the share of a run's trained entries with "
              "|x| > c, mean and max over the runs of a configuration; *largest |x|*: the largest trained "
              "entry of any run. *Test error*: mean over the runs, of the trained (unquantised) model "
              "and of the quantised one the bounds are about; *cost* = quantised − trained. "
              f"Configurations with more than {CLIP_NOTE_FRACTION:.0%} clipped are in bold and in the notes.", ""]
    extra = [k for k, varies in (("alpha", len({(q["rank"], q["alpha"]) for q in rows}) > len({q["rank"] for q in rows})),
                                 ("init", len({q["init"] for q in rows}) > 1),
                                 ("clip", len({q["clip"] for q in rows}) > 1)) if varies]
    header = ["task", "mode", "rank", "n", "bits", *extra, "runs", "clipped: mean", "clipped: max",
              "largest \\|x\\|", "test error, trained", "test error, quantised", "cost"]
    pct = lambda v: "—" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    num = lambda v, f="{:.4f}": "—" if v is None else f.format(v)  # noqa: E731
    body = []
    for q in rows:
        loud = q["clipped_mean"] is not None and q["clipped_mean"] > CLIP_NOTE_FRACTION
        mean = f"**{pct(q['clipped_mean'])}**" if loud else pct(q["clipped_mean"])
        body.append([q["task"], q["mode"], "—" if q["mode"] == Mode.FULL.value else q["rank"], q["n"],
                     q["bits"], *(num(q[k], "{:g}") if k != "init" else q[k] for k in extra), q["runs"],
                     mean, pct(q["clipped_max"]), num(q["trained_max_abs"], "{:.4g}"),
                     num(q["test_error_trained"]), num(q["test_error_quantised"]), num(q["cost"], "{:+.4f}")])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _linreg_table(records) -> str:
    from .closed_forms import linreg_table

    return linreg_table(records)


def _describe_setting(out: Path, record: dict) -> dict:
    """Folder-wide settings of a sweep, in words: the task description recorded at validate time."""
    described = _read_settings(out).get("task_description")
    if not described:
        described = _task_description(record["task"])
    return {
        "task details": described,
        "training": f"full-batch Adam, {record['steps']} steps, step size {record['lr']}; adapted layers: "
                    f"{record.get('targets') or 'the task default'}",
        "quantisation": f"trained parameters rounded after training to a uniform grid on "
                        f"[−{record['clip']}, {record['clip']}] fixed before training (2^bits points)"
                        + (" by --clip auto: the most Adam can move an entry from its init in "
                           f"{record['steps']} steps of {record['lr']}" if record.get("clip_rule") == "auto" else ""),
        "versions": record.get("versions", "unknown"),
    }


def _task_description(name: str) -> str:
    from ..extras import HARNESS, missing

    if missing(HARNESS):
        return f"{name} (its description was not recorded, and the harness extra is not installed)"
    from .tasks import get_task

    return get_task(name).describe()


def _read_settings(out: Path) -> dict:
    try:
        data = json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_folder(out: Path) -> None:
    """Refuse a non-empty folder that holds no run store: its files are the user's, not ours."""
    from .store import RunStore

    if out.is_dir() and not (out / RunStore.FILENAME).exists() and any(out.iterdir()):
        raise InputError(f"out {str(out)!r} is a non-empty folder that holds no infobound run store "
                         f"({RunStore.FILENAME}); validate would write records.csv, summary.md, "
                         f"{SETTINGS_FILE} and plots there. Choose a new or empty folder")


def _canonical_targets(layers, targets, default) -> tuple[str, ...] | None:
    """``None`` when ``targets`` selects the task's default layers; else the names in model order."""
    if [l.name for l in layers] == [l.name for l in default]:
        return None
    names = parse_targets(targets)
    order = {l.name: i for i, l in enumerate(layers)}
    first = {t: min(order[l.name] for l in layers if l.name == t or l.name.endswith("." + t)) for t in names}
    return tuple(sorted(names, key=first.__getitem__))


def _settings(config: SweepConfig) -> dict:
    from .tasks import get_task

    settings = asdict(config)
    settings["modes"] = [m.value for m in config.modes]
    settings["task_description"] = get_task(config.task).describe()
    return settings


def _grid_text(values) -> str | None:
    from .tuning import grid_text

    return None if values is None else grid_text(values)


def _check_same_settings(store, config: SweepConfig) -> None:
    stored = store.records()
    if not stored:
        return
    wanted = {"kind": config.kind, "task": config.task, "steps": config.steps, "lr": config.lr,
              "clip": config.clip, "targets": None if config.targets is None else ",".join(config.targets),
              "split": config.split, "batch_size": config.batch_size,
              "tune_lrs": _grid_text(config.tune_lrs), "tune_steps_grid": _grid_text(config.tune_steps)}
    first = stored[0]
    have = {k: first.get(k) for k in FOLDER_WIDE}
    have["kind"] = have["kind"] or "seeds"
    have["split"] = have["split"] or "fixed"  # records written before splits were a setting
    tuned = config.candidates() is not None or have["tune_lrs"] is not None
    compared = [k for k in FOLDER_WIDE if not (tuned and k in ("lr", "steps"))]  # tuned runs record their choice
    differ = [k for k in compared if have[k] != wanted[k]]
    if differ:
        pairs = ", ".join(f"{k}={have[k]!r} (asked {wanted[k]!r})" for k in differ)
        raise InputError(f"--out {str(store.folder)!r} holds runs of another sweep setting: {pairs}; "
                         "choose another --out folder (nothing stored was changed)")


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str))
