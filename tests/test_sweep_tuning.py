"""Tuned sweeps: lr and steps chosen per configuration on a validation split, paid in every bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infobound.errors import InputError
from infobound.harness.sweep import SweepConfig, run_group
from infobound.spec import Mode

pytestmark = pytest.mark.usefixtures("one_thread")
TUNED = dict(task="digits", modes=(Mode.LORA, Mode.B_ONLY), ranks=(2,), ns=(80,), seeds=3, bits=(8,),
             tune_lrs=(3e-3, 3e-2), tune_steps=(10, 30), split="fixed")


@pytest.fixture(scope="module")
def tuned(finish_sweep):
    return finish_sweep(SweepConfig(**TUNED), "tuned")


def test_records_carry_the_choice_and_train_with_it(tuned):
    """Every tuned record equals the record of an untuned run given the chosen lr and steps."""
    for r in tuned["records"]:
        assert r["tune_candidates"] == 4 and r["tune_bits"] == pytest.approx(2.0)
        assert (r["lr"], r["steps"]) == (r["tune_lr"], r["tune_steps"])
        assert r["tune_lr"] in (3e-3, 3e-2) and r["tune_steps"] in (10, 30)
        assert r["tune_n_val"] == 16 and r["tune_n_fit"] == 64
    for mode in (Mode.LORA, Mode.B_ONLY):
        mine = [r for r in tuned["records"] if r["mode"] == mode.value]
        plain = SweepConfig(**{**TUNED, "modes": (mode,), "tune_lrs": None, "tune_steps": None,
                               "lr": mine[0]["lr"], "steps": mine[0]["steps"]})
        (group,) = plain.groups()
        again = {r["seed"]: r for r in run_group(group)}
        for r in mine:
            assert r["test_error"] == again[r["seed"]]["test_error"]
            assert r["train_error"] == again[r["seed"]]["train_error"]


def test_every_bound_pays_log2_of_the_candidates(tuned):
    for r in tuned["records"]:
        d, n = r["trainable_params"], r["n"]
        by_hand = 0.5 * math.sqrt(2.0 * (8 * d + math.log2(4)) * math.log(2) / n)
        assert r["bound"] == pytest.approx(by_hand, rel=1e-12)
        assert r["choice_bits"] == pytest.approx(2.0) and r["code_choice_bits"] == pytest.approx(2.0)


def test_code_length_includes_the_choice(tuned):
    """The recorded code length is the itemised code of the stored indices plus exactly 2 bits."""
    from infobound.codelength import Grid, adapter_code_length
    from infobound.harness.codes import ARRAY_PREFIX, seed_bits

    for r in tuned["records"][:2]:
        arrays = tuned["arrays"][r["key"]]
        tensors = {k[len(ARRAY_PREFIX):]: v for k, v in arrays.items() if k.startswith(ARRAY_PREFIX)}
        plain = adapter_code_length(tensors, Grid(8, r["clip"]), seed_bits=r["code_seed_bits"])
        assert r["code_seed_bits"] == seed_bits(Mode.parse(r["mode"]), 1_000_000)
        assert r["code_length_bits"] == pytest.approx(plain.total_bits + 2.0)


def test_report_shows_the_tuning(tuned):
    text = (tuned["folder"] / "summary.md").read_text()
    assert "## Tuning" in text and "log2(4) = 2 bits" in text


def test_rerun_with_the_same_grid_writes_nothing_and_another_grid_is_refused(tuned):
    from infobound.harness.validate import validate

    again = validate(SweepConfig(**TUNED), tuned["folder"], progress=False)
    assert again["counts"]["written"] == 0
    with pytest.raises(InputError, match="another sweep setting"):
        validate(SweepConfig(**{**TUNED, "tune_lrs": (1e-2,)}), tuned["folder"], progress=False)


def test_bad_tuning_input(tmp_path):
    from infobound.harness.validate import validate

    with pytest.raises(InputError, match="lr candidates must hold at least one value"):
        SweepConfig(tune_lrs=())
    with pytest.raises(InputError, match="steps candidates"):
        SweepConfig(tune_steps=(0,))
    with pytest.raises(InputError, match="applies to kind 'seeds'"):
        SweepConfig(kind="cmi", tune_lrs=(1e-2, 3e-2))
    with pytest.raises(InputError, match="validation_fraction"):
        SweepConfig(tune_lrs=(1e-2,), validation_fraction=1.0)
    with pytest.raises(InputError, match="too small"):
        validate(SweepConfig(task="digits", ranks=(1,), ns=(1,), seeds=2, tune_lrs=(1e-2, 3e-2)),
                 tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_untuned_keys_unchanged_and_tuned_keys_differ():
    plain = SweepConfig(ranks=(1,), ns=(50,), seeds=1).groups()[0].run_config(0, 8)
    assert "tune" not in plain
    tuned = SweepConfig(ranks=(1,), ns=(50,), seeds=1, tune_lrs=(1e-2, 3e-2)).groups()[0].run_config(0, 8)
    assert tuned["tune"] == {"lrs": [1e-2, 3e-2], "steps": [300], "validation_fraction": 0.2}


def test_auto_clip_covers_the_largest_candidates():
    from infobound.harness.sweep import auto_clip

    tuned = SweepConfig(ranks=(1,), ns=(50,), seeds=1, tune_lrs=(1e-3, 5e-2), tune_steps=(50, 400), clip="auto")
    widest = SweepConfig(ranks=(1,), ns=(50,), seeds=1, lr=5e-2, steps=400, clip="auto")
    assert tuned.clip == widest.clip == auto_clip(widest)
    assert np.isfinite(tuned.clip)


@pytest.mark.parametrize("argv, message", [
    (["--tune-lrs", ""], "--tune-lrs"),
    (["--tune-lrs", "0.01,abc"], "--tune-lrs"),
    (["--tune-steps", "0"], "--tune-steps"),
    (["--tune-lrs", "0.01", "--kind", "cmi"], "applies to kind 'seeds'"),
    (["--tune-lrs", "0.01,0.03", "--n", "1"], "too small"),
    (["--model", "resnet", "--task", "mnist"], "model"),
    (["--model", "vit", "--task", "digits"], "task 'digits' has no model setting"),
    (["--split", "per_seed", "--task", "teacher"], "per_seed"),
    (["--task", "mnist/vit", "--targets", "query"], "q_proj"),
    (["--task", "mnist:sideways"], "shift must be one of"),
    (["--task", "mnist/vit:mirror", "--n", "2001"], "n must be at most 2000"),
    (["--task", "mnist", "--tune-lrs", "0.01,0.03", "--n", "3000"], "n must be at most"),
])
def test_cli_bad_tuning_model_and_split(tmp_path, capsys, argv, message):
    from infobound.cli import main

    out = tmp_path / "out"
    assert main(["validate", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()
