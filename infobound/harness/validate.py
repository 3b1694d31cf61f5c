"""``validate``: check everything, run a sweep into a folder, and write the report; ``report``: redraw it.

A folder holds one sweep's records (``records.sqlite``), and what is derived from them:
``records.csv``, ``summary.md`` and the plots. Everything derived is rewritten from the stored records,
so ``infobound report DIR`` reproduces it without training.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write
from ..presets import select_layers
from ..spec import Mode, check_rank
from .closed_forms import linreg_table
from .sweep import SweepConfig, linear_layers

SETTINGS_FILE = "sweep.json"
# Settings that change what a record means without being part of the report's configuration columns:
# one folder holds one value of each, so the report never averages across them.
FOLDER_WIDE = ("task", "steps", "lr", "clip", "targets")


def check_sweep(config: SweepConfig, out: Path):
    """Every check that can fail, before any training: returns the opened ``RunStore``."""
    from .store import RunStore
    from .tasks import get_task

    task = get_task(config.task)  # unknown task: InputError listing the tasks
    too_many = [n for n in config.ns if n > task.max_n]
    if too_many:
        raise InputError(f"n must be at most {task.max_n} for task {config.task} (the size of its "
                         f"target training pool), got {too_many[0]}")
    targets = config.targets or task.default_targets
    layers = select_layers(linear_layers(task.base_model()), targets, model=f"task {config.task}")
    if any(m is not Mode.FULL for m in config.modes):
        check_rank(max(config.ranks), layers)  # names the layer that limits the rank
    RunStore.check_writable(out)
    store = RunStore(out)  # a foreign or incompatible store: InputError, file untouched
    try:
        _check_same_settings(store, config)
    except BaseException:
        store.close()
        raise
    return store


def validate(config: SweepConfig, out, *, progress: bool = True, workers: int = 1, executor=None) -> dict:
    """Run the sweep (skipping stored runs) and write the report of every record in the folder.

    ``workers`` > 1 runs groups in that many processes (ignored when an ``executor`` is given).
    """
    from .sweep import process_pool, run_sweep

    out = Path(out)
    store = check_sweep(config, out)
    with store:
        _write_json(out / SETTINGS_FILE, _settings(config))
        if executor is None and workers > 1:
            with process_pool(workers) as pool:
                counts = run_sweep(config, store, executor=pool, progress=progress)
        else:
            counts = run_sweep(config, store, executor=executor, progress=progress)
        records = store.records()  # the whole folder, as `infobound report DIR` sees it
    result = write_report(out, records)
    result["counts"] = counts
    return result


def write_report(out, records=None) -> dict:
    """CSV, Markdown summary and plots from ``records`` (default: every record stored in ``out``)."""
    from . import report
    from .store import RunStore

    out = Path(out)
    if records is None:
        if not (out / RunStore.FILENAME).is_file():
            raise InputError(f"DIR must be a folder written by infobound validate; "
                             f"no {RunStore.FILENAME} in {str(out)!r}")
        with RunStore(out, create=False) as store:
            records = store.records()
    if not records:
        raise InputError(f"DIR holds no finished runs: {str(out)!r}")
    summary = report.summarize(records)
    csv_path = report.write_csv(records, out / "records.csv")
    plots = report.write_plots(records, out)
    meta = {"title": f"infobound validate: task {records[0]['task']}", **_describe_setting(records[0]),
            "plots": [str(p) for p in plots], "sections": [linreg_table(records)]}
    md_path = report.write_markdown(summary, out / "summary.md", meta)
    return {"summary": summary, "table": report.format_verdict_table(summary), "csv": csv_path,
            "markdown": md_path, "plots": list(plots), "skipped_plots": list(plots.skipped),
            "records": len(records)}


def _describe_setting(record: dict) -> dict:
    """Folder-wide settings of a sweep, in words, from one of its records."""
    from .tasks import get_task

    return {
        "task details": get_task(record["task"]).describe(),
        "training": f"full-batch Adam, {record['steps']} steps, step size {record['lr']}; adapted layers: "
                    f"{record.get('targets') or 'the task default'}",
        "quantisation": f"trained parameters rounded after training to a uniform grid on "
                        f"[−{record['clip']}, {record['clip']}] fixed before training (2^bits points)",
        "versions": record.get("versions", "unknown"),
    }


def _settings(config: SweepConfig) -> dict:
    settings = asdict(config)
    settings["modes"] = [m.value for m in config.modes]
    return settings


def _check_same_settings(store, config: SweepConfig) -> None:
    stored = store.records()
    if not stored:
        return
    wanted = {"task": config.task, "steps": config.steps, "lr": config.lr, "clip": config.clip,
              "targets": None if config.targets is None else ",".join(config.targets)}
    first = stored[0]
    have = {k: first.get(k) for k in FOLDER_WIDE}
    differ = [k for k in FOLDER_WIDE if have[k] != wanted[k]]
    if differ:
        pairs = ", ".join(f"{k}={have[k]!r} (asked {wanted[k]!r})" for k in differ)
        raise InputError(f"--out {str(store.folder)!r} holds runs of another sweep setting: {pairs}; "
                         "choose another --out folder (nothing stored was changed)")


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str))
