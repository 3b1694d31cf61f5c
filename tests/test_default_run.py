"""The README's main job: the default `infobound validate`, end to end (slow: about a minute)."""

import csv
import math

import pytest

from infobound.cli import main


@pytest.mark.slow
def test_default_validate_run(tmp_path, capsys):
    out = tmp_path / "default"
    assert main(["validate", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "records.csv")))
    # 3 modes × 4 ranks × 4 n × 12 seeds × 1 bit width
    assert len(rows) == 576 and len({r["key"] for r in rows}) == 576
    for row in rows:
        rank, n = int(row["rank"]), int(row["n"])
        d_train = rank * 128 * 2 if row["mode"] == "lora" else rank * 64 * 2  # fc1, fc2: 64 -> 64
        expected = math.sqrt(2 * 0.25 * math.log(2) * 8 * d_train / n)
        assert float(row["bound"]) == pytest.approx(expected, rel=1e-12)
        assert float(row["gap"]) == float(row["test_error"]) - float(row["train_error"])
    # every verdict printed is one of the defined ones, and 'holds' only where the bound is below 1
    verdicts = [line.split()[-1] for line in printed.splitlines() if line.startswith("digits ")]
    assert len(verdicts) == 48 and set(verdicts) <= {"holds", "vacuous", "inconclusive", "violated"}
    for line in printed.splitlines():
        if line.startswith("digits ") and line.endswith("holds"):
            assert float(line.split()[-2]) < 1.0
    assert (out / "summary.md").read_text().count("| digits |") >= 48
