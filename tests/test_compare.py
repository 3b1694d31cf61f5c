"""Claims side by side across tasks (``harness.compare``) and ``validate --task A,B``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from infobound.errors import InputError
from infobound.harness.compare import comparison_markdown, comparison_rows, format_comparison
from infobound.harness.report import summarize
from infobound.harness.store import open_for_reading
from infobound.harness.sweep import SweepConfig
from infobound.spec import Mode

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(modes=(Mode.LORA, Mode.B_ONLY, Mode.A_ONLY), ranks=(1, 2), ns=(60,), seeds=3, steps=15)


@pytest.fixture(scope="module")
def two(finish_sweep):
    return [finish_sweep(SweepConfig(task=t, **SMALL), t.replace(":", "_"))["folder"] for t in ("digits", "digits:flip")]


def _holm(p):
    """Holm's step-down adjustment, written out: p_(i) · (m − i + 1), running max, capped at 1."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(p) - i) * p[j]))
        adjusted[j] = running
    return adjusted


def test_rows_hold_seed_matched_differences_from_the_records(two):
    rows = comparison_rows(two)
    assert {(r.task, r.rank) for r in rows} == {(t, k) for t in ("digits", "digits:flip") for k in (1, 2)}
    for r in rows:
        folder = two[0] if r.task == "digits" else two[1]
        with open_for_reading(folder) as store:
            recs = store.records()
        test = {(x["mode"], x["seed"]): x["test_error"] for x in recs if x["rank"] == r.rank}
        d = np.array([test["b_only", s] - test["lora", s] for s in range(3)])
        t = stats.t.ppf(0.975, 2)
        assert r.b_minus_lora == pytest.approx(d.mean())
        half = t * d.std(ddof=1) / math.sqrt(3)
        assert r.b_minus_lora_ci == pytest.approx((d.mean() - half, d.mean() + half))
        a = np.array([test["a_only", s] - test["b_only", s] for s in range(3)])
        assert r.a_minus_b == pytest.approx(a.mean())
        assert r.lora_test == pytest.approx(np.mean([test["lora", s] for s in range(3)]))
        assert r.side == "input"
        assert 0.0 <= r.captured_b_only <= 1.0 + 1e-9 and 0.0 <= r.captured_a_only <= 1.0 + 1e-9


def test_decisions_are_holm_across_every_folder(two):
    claims = []
    for folder in two:
        with open_for_reading(folder) as store:
            summary = summarize(store.records())
        claims += [c for c in summary.claims if c.claim in ("i", "ii")]
    holm_yes, holm_no = _holm([c.p_yes for c in claims]), _holm([c.p_no for c in claims])
    expected = {}
    for c, hy, hn in zip(claims, holm_yes, holm_no):
        expected[(c.task, int(c.rank), c.claim)] = "yes" if hy < 0.025 else "no" if hn < 0.025 else "unclear"
    for r in comparison_rows(two):
        assert r.b_equals_lora == expected[(r.task, r.rank, "i")]
        assert r.a_worse_than_b == expected[(r.task, r.rank, "ii")]


def test_markdown_and_terminal_tables(two):
    rows = comparison_rows(two)
    md, text = comparison_markdown(rows), format_comparison(rows)
    assert md.count("\n| digits") == len(rows) and "Holm across every row" in md
    assert "digits:flip" in text and "captured: B-only" in text


def test_a_folder_without_a_store_is_refused(tmp_path):
    with pytest.raises(InputError, match="holds no run store"):
        comparison_rows([tmp_path])
    with pytest.raises(InputError, match="at least one"):
        comparison_rows([])


def test_cli_runs_each_task_into_its_folder_and_compares(tmp_path):
    from infobound.cli import main

    out = tmp_path / "out"
    code = main(["validate", "--task", "digits,digits:flip", "--out", str(out), "--modes", "lora,b_only",
                 "--ranks", "1", "--n", "40", "--seeds", "2", "--steps", "5", "--no-progress", "--workers", "1"])
    assert code == 0
    assert (out / "digits" / "summary.md").is_file() and (out / "digits_flip" / "summary.md").is_file()
    assert "digits:flip" in (out / "comparison.md").read_text()


def test_cli_checks_every_task_before_training(tmp_path, capsys):
    from infobound.cli import main

    out = tmp_path / "out"
    code = main(["validate", "--task", "digits,nope", "--out", str(out), "--no-progress"])
    assert code == 2 and not out.exists()
    assert "task must be one of" in capsys.readouterr().err
    code = main(["validate", "--task", "digits,digits", "--out", str(out), "--no-progress"])
    assert code == 2 and not out.exists()


def test_report_on_a_folder_of_sweeps_rewrites_the_comparison(two, tmp_path, capsys):
    import shutil

    from infobound.cli import main

    parent = tmp_path / "both"
    for folder, name in zip(two, ("digits", "digits_flip")):
        shutil.copytree(folder, parent / name)
    assert main(["report", str(parent)]) == 0
    text = (parent / "comparison.md").read_text()
    assert "| digits:flip |" in text and "| digits |" in text
    assert (parent / "digits_flip" / "summary.md").is_file()
