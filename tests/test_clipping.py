"""Quantisation that does not break the model silently: ``--clip auto``, the report's Quantisation
section, its notes and the validate warning.

The automatic clip is checked against the formula written out here by hand (Adam's worst-case step
by an explicit Cauchy–Schwarz sum, the init's largest entry drawn here from ``draw_factor`` with the
seeds derived here) and against torch: an adversarial gradient sequence makes ``torch.optim.Adam``
reach the per-step bound (and pass the often-quoted (1−β1)/√(1−β2)), random ones never pass it. A
tiny sweep is trained again here from the library's parts (not through the sweep) to read the
largest trained entry and each run's clipped fraction directly.
"""

from __future__ import annotations

import inspect
import math
import sqlite3
import json
from dataclasses import replace
from decimal import ROUND_CEILING, Decimal

import numpy as np
import pytest
import torch

from cli_helpers import one_error_line, run_cli
from infobound.harness.sweep import (ADAM_BETAS, SweepConfig, adam_step_bound, adam_travel_bound,
                                     auto_clip, run_group)
from infobound.harness.validate import CLIP_NOTE_FRACTION, validate, write_report

B1, B2 = 0.9, 0.999  # torch.optim.Adam's defaults, checked below
ALLOWANCE = 2.0**-20  # the documented per-step float32 allowance


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------- the formula by hand
def hand_step_bound(t: int) -> float:
    """c_t by the Cauchy–Schwarz sum itself (no closed form): bias corrections times
    (1−β1) · sqrt(Σ_{j<t} (β1²/β2)^j) / sqrt(1−β2)."""
    weights = sum((B1 * B1 / B2) ** j for j in range(t))
    return (1 - B1) * math.sqrt(weights) / math.sqrt(1 - B2) * math.sqrt(1 - B2**t) / (1 - B1**t)


def hand_step_bounds(steps: int) -> np.ndarray:
    """c_1 .. c_steps, the same sums kept running."""
    out, weights = [], 0.0
    for t in range(1, steps + 1):
        weights += (B1 * B1 / B2) ** (t - 1)
        out.append((1 - B1) * math.sqrt(weights) / math.sqrt(1 - B2) * math.sqrt(1 - B2**t) / (1 - B1**t))
    return np.array(out)


def hand_clip(x0: float, steps: int, lr: float) -> float:
    """(x0 + lr Σ c_t)(1 + 2^-20)^steps, rounded up to 4 significant digits with Decimal."""
    raw = (x0 + lr * math.fsum(hand_step_bounds(steps))) * (1 + ALLOWANCE) ** steps
    exact = Decimal(raw)
    rounded = exact.quantize(Decimal(1).scaleb(exact.adjusted() - 3), rounding=ROUND_CEILING)
    out = float(rounded)
    return out if out >= raw else math.nextafter(out, math.inf)


def test_the_trainer_uses_torch_adam_with_the_betas_assumed(monkeypatch):
    defaults = inspect.signature(torch.optim.Adam.__init__).parameters
    assert defaults["betas"].default == (B1, B2) == ADAM_BETAS
    assert defaults["amsgrad"].default is False and defaults["weight_decay"].default == 0
    from infobound.harness import train

    built = []
    real = train.make_adam

    def spy(params, **kwargs):
        built.append(real(params, **kwargs))
        return built[-1]

    monkeypatch.setattr(train, "make_adam", spy)
    from infobound.lora import inject_lora

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    inject_lora(model, "0", 1, mode="b_only", stack=2, seeds=[1, 2])
    train.train_stacked(model, torch.randn(2, 5, 4), torch.zeros(2, 5, dtype=torch.int64), steps=2, lr=0.1)
    # on CPU: PlainAdam, torch.optim.Adam's arithmetic (bit-identical, test_train), with its defaults
    [adam] = built
    assert isinstance(adam, train.PlainAdam)
    assert (adam.lr, adam.weight_decay, adam.betas) == (0.1, 0.0, ADAM_BETAS)
    assert adam.eps == defaults["eps"].default == 1e-8 and adam.steps == 2


@pytest.mark.parametrize("t", [1, 2, 3, 10, 100, 483, 2000])
def test_step_bound_is_the_cauchy_schwarz_sum(t):
    assert adam_step_bound(t) == pytest.approx(hand_step_bound(t), rel=1e-12)
    assert adam_step_bound(1) == 1.0


def test_step_bound_limit_and_the_textbook_constant():
    c_inf = (1 - B1) / math.sqrt((1 - B2) * (1 - B1 * B1 / B2))
    assert c_inf == pytest.approx(7.2703, abs=1e-4)
    assert adam_step_bound(100_000) == pytest.approx(c_inf, rel=1e-12)
    assert adam_travel_bound(300) == pytest.approx(math.fsum(hand_step_bounds(300)), rel=1e-12)
    assert adam_travel_bound(300) == pytest.approx(772.53, abs=0.01)
    textbook = (1 - B1) / math.sqrt(1 - B2)  # ≈ 3.16: larger in total up to 482 steps, smaller after
    assert adam_travel_bound(482) < 482 * textbook and adam_travel_bound(483) > 483 * textbook
    assert adam_travel_bound(10**6) > 2.2 * 10**6 * textbook


def adam_run(grads, lr=0.01) -> np.ndarray:
    """Each step's |Δx| of torch.optim.Adam (defaults) on one float64 entry fed ``grads``."""
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([x], lr=lr)
    moves = []
    for g in grads:
        before = float(x.detach())
        x.grad = torch.tensor([float(g)], dtype=torch.float64)
        opt.step()
        moves.append(abs(float(x.detach()) - before))
    return np.array(moves)


def test_torch_adam_attains_the_bound_with_growing_gradients():
    steps, lr = 2000, 0.01  # gradients up to (β2/β1)^2000 ≈ e^209: float64 holds them and their squares
    moves = adam_run([(B2 / B1) ** t for t in range(1, steps + 1)], lr)
    bounds = lr * hand_step_bounds(steps)
    assert np.all(moves <= bounds * (1 + 1e-9))
    np.testing.assert_allclose(moves, bounds, rtol=1e-6)  # equality at every step (eps aside)
    textbook = lr * (1 - B1) / math.sqrt(1 - B2)
    assert moves[299] > textbook and moves[-1] > 2 * textbook  # the often-quoted "bound" is passed
    assert moves.sum() == pytest.approx(lr * adam_travel_bound(steps), rel=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "heavy", "sparse", "flip"])
def test_torch_adam_never_passes_the_bound(kind):
    rng = np.random.default_rng(len(kind))
    steps = 400
    grads = {"gaussian": rng.standard_normal(steps), "heavy": rng.standard_cauchy(steps) * 1e3,
             "sparse": rng.standard_normal(steps) * (rng.random(steps) < 0.05),
             "flip": np.cumprod(np.full(steps, 1.08)) * (-1) ** (np.arange(steps) // 50)}[kind]
    moves = adam_run(grads)
    bounds = 0.01 * hand_step_bounds(steps)
    assert np.all(moves <= bounds * (1 + 1e-9))


# -------------------------------------------------------------------------- the automatic clip
def test_auto_clip_equals_the_hand_formula_for_orthonormal_and_zero_starts():
    tiny = dict(ranks=(1, 2), ns=(30,), seeds=2, steps=30, lr=0.01)
    lora = SweepConfig(modes=("lora", "b_only"), clip="auto", **tiny)
    assert lora.clip == hand_clip(1.0, 30, 0.01) and lora.clip_rule == "auto"  # |entry of a unit vector| ≤ 1
    zero = SweepConfig(modes=("b_only", "a_only", "full"), clip="auto", **tiny)
    assert zero.clip == hand_clip(0.0, 30, 0.01)  # every trained factor starts at zero
    assert zero.clip == 0.3354  # 0.01 · 33.535 · 1.00003 = 0.33536, rounded up
    for steps, lr in ((1, 0.5), (50, 0.1), (300, 1e-2), (1000, 3e-3)):
        config = SweepConfig(clip="auto", steps=steps, lr=lr, **{k: v for k, v in tiny.items() if k not in ("steps", "lr")})
        assert config.clip == hand_clip(1.0, steps, lr), (steps, lr)
        assert auto_clip(config) == config.clip
    assert SweepConfig(clip="auto").clip == 8.728  # the default sweep's, as documented
    assert SweepConfig(clip=" AUTO ").clip == 8.728


def test_the_default_clip_is_unchanged():
    config = SweepConfig()
    assert config.clip == 4.0 and config.clip_rule == "fixed"
    group = config.groups()[0]
    assert "clip_rule" not in group.run_config(0, 8) and group.run_config(0, 8)["clip"] == 4.0


def test_kaiming_and_gaussian_starts_are_bounded_by_hand():
    from infobound.lora import derive_seed, draw_factor

    kaiming = SweepConfig(task="teacher", modes=("lora",), ranks=(1, 2), ns=(30,), seeds=2, steps=30,
                          init="kaiming", clip="auto")
    assert kaiming.clip == hand_clip(1 / math.sqrt(16), 30, 0.01)  # teacher's fc1 is 16 -> 64
    assert SweepConfig(modes=("lora",), ranks=(1,), ns=(30,), seeds=2, steps=30, init="kaiming",
                       clip="auto").clip == hand_clip(1 / 8, 30, 0.01)  # digits: 64 -> 64 twice
    ranks, seeds = (1, 3), 3
    largest = 0.0
    for rank in ranks:
        for s in range(seeds):
            frozen = 1_000_003 * (s + 1)  # the frozen factor's seed of run s
            for index in (0, 1):  # fc1, fc2: the digits network's first two nn.Linear layers
                a = draw_factor("A", 64, 64, rank, "gaussian", derive_seed(frozen, index)).float()
                largest = max(largest, float(a.abs().max()))
    gaussian = SweepConfig(modes=("lora", "b_only"), ranks=ranks, ns=(30,), seeds=seeds, steps=30,
                           init="gaussian", clip="auto")
    assert largest > 1.5  # the draws are N(0, 1/r): unbounded, so the actual draws decide
    assert gaussian.clip == hand_clip(largest, 30, 0.01)


def test_auto_survives_replace_and_a_wrong_number_is_refused():
    config = SweepConfig(ranks=(1,), ns=(30,), seeds=2, steps=30, clip="auto")
    again = replace(config, targets=("fc1", "fc2"))
    assert (again.clip, again.clip_rule) == (config.clip, "auto")
    with pytest.raises(ValueError, match="clip_rule 'auto' needs clip"):
        replace(config, steps=60)  # a stale number: pass clip="auto" again
    assert replace(config, steps=60, clip="auto").clip == hand_clip(1.0, 60, 0.01)
    with pytest.raises(ValueError, match="clip_rule"):
        SweepConfig(clip_rule="sometimes")
    fixed = SweepConfig(ranks=(1,), ns=(30,), seeds=2, steps=30, clip=config.clip)
    assert fixed.clip_rule == "fixed"
    assert fixed.groups()[0].keys() == config.groups()[0].keys()  # the number keys the runs, not the rule


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "abc", "", None, True])
def test_api_refuses_a_bad_clip_naming_what_is_allowed(value):
    with pytest.raises(ValueError) as err:
        SweepConfig(clip=value)
    assert "clip must be a finite number > 0 or 'auto'" in str(err.value)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "abc", "inf", "", "0.0"])
def test_cli_refuses_a_bad_clip_with_one_line(tmp_path, text):
    line = one_error_line(*run_cli(["validate", "--clip", text, "--out", str(tmp_path / "out"), "--no-progress"]))
    assert "--clip" in line and "> 0 or auto" in line, line
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- trained entries, read directly
STRESS = dict(modes=("lora", "b_only"), ranks=(1,), ns=(30,), seeds=2, bits=(8,), steps=40, lr=0.1, alpha=0.01,
              split="fixed")  # the test rebuilds runs from task.train_set (the fixed split)
"""Small alpha and a large step: B must grow large, and ±4 clips it (the tracker's case)."""


def train_myself(mode: str, config: SweepConfig) -> list[torch.Tensor]:
    """Each run's trained entries, trained here from the task, inject_lora and train_stacked."""
    from infobound.harness.tasks import get_task
    from infobound.harness.train import train_stacked
    from infobound.lora import inject_lora

    task = get_task(config.task)
    model = task.base_model()
    seeds = list(range(config.seeds))
    inject_lora(model, task.default_targets, config.ranks[0], mode=mode, alpha=config.alpha,
                init=config.init, stack=len(seeds), seeds=[1_000_003 * (s + 1) for s in seeds])
    data = [task.train_set(config.ns[0], seed=s) for s in seeds]
    x = torch.stack([torch.as_tensor(a) for a, _ in data])
    y = torch.stack([torch.as_tensor(b) for _, b in data])
    train_stacked(model, x, y, steps=config.steps, lr=config.lr, loss="cross_entropy", seed=0)
    trained = [p.detach().double() for p in model.parameters() if p.requires_grad]
    return [torch.cat([p[i].flatten() for p in trained]) for i in range(len(seeds))]


@pytest.fixture(scope="module")
def stressed():
    """(auto config, its records, ±4 records, {mode: each run's trained entries})."""
    auto = SweepConfig(clip="auto", **STRESS)
    fixed = SweepConfig(**STRESS)
    records = [r for g in auto.groups() for r in run_group(g)]
    at_four = [r for g in fixed.groups() for r in run_group(g)]
    mine = {mode: train_myself(mode, auto) for mode in STRESS["modes"]}
    return auto, records, at_four, mine


def test_no_trained_entry_is_clipped_under_auto(stressed):
    auto, records, _, mine = stressed
    assert auto.clip == hand_clip(1.0, 40, 0.1) == 5.745
    largest = max(float(v.abs().max()) for runs in mine.values() for v in runs)
    assert largest <= auto.clip
    assert largest > 0.7 * auto.clip  # a near worst case: the check is not vacuous
    for r in records:
        entries = mine[r["mode"]][r["seed"]]
        assert r["clip"] == auto.clip and r["clip_rule"] == "auto"
        assert r["clipped_fraction"] == 0.0
        assert r["trained_max_abs"] == pytest.approx(float(entries.abs().max()), rel=1e-6)


def test_each_run_records_its_own_clipped_fraction_at_four(stressed):
    _, _, at_four, mine = stressed
    for r in at_four:
        entries = mine[r["mode"]][r["seed"]]
        assert r["clip"] == 4.0 and r["clip_rule"] == "fixed"
        assert r["clipped_fraction"] == pytest.approx(float((entries.abs() > 4.0).double().mean()), abs=1e-12)
    b_only = [r["clipped_fraction"] for r in at_four if r["mode"] == "b_only"]
    assert min(b_only) > 0.1 and len(set(b_only)) == 2  # the silent case, and per run, not per stack


# ------------------------------------------------------------------- the report, notes and warning
def stored(folder) -> list[dict]:
    conn = sqlite3.connect(folder / "records.sqlite")
    try:
        return [json.loads(row[0]) for row in conn.execute("SELECT record FROM records")]
    finally:
        conn.close()


def section(markdown: str) -> list[list[str]]:
    """The Quantisation table's rows, cells stripped."""
    part = markdown.split("## Quantisation\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in part.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[1:]]


TINY = ["--modes", "b_only", "--ranks", "1,2", "--n", "30", "--seeds", "2", "--bits", "8", "--steps", "20",
        "--workers", "1", "--no-progress"]


def test_validate_warns_once_and_the_report_shows_what_clipping_cost(tmp_path):
    folder = tmp_path / "small-clip"
    status, out, err = run_cli(["validate", "--out", str(folder), *TINY, "--clip", "0.05"])
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("infobound: warning:")]
    assert len(warnings) == 1, err
    assert "2 of 2 quantised configurations" in warnings[0] and "±0.05" in warnings[0]
    assert "--clip auto" in warnings[0] and "summary.md" in warnings[0]

    records = stored(folder)
    markdown = (folder / "summary.md").read_text(encoding="utf-8")
    rows = section(markdown)
    assert len(rows) == 2
    for row in rows:
        runs = [r for r in records if r["rank"] == int(row[2])]
        fractions = [r["clipped_fraction"] for r in runs]
        assert row[:5] == ["digits", "b_only", row[2], "30", "8"] and row[5] == "2"
        assert row[6] == f"**{100 * np.mean(fractions):.2f}%**" and row[7] == f"{100 * max(fractions):.2f}%"
        assert float(row[8]) == pytest.approx(max(r["trained_max_abs"] for r in runs), rel=1e-3)
        trained = np.mean([r["unquantised_test_error"] for r in runs])
        quantised = np.mean([r["test_error"] for r in runs])
        assert (row[9], row[10], row[11]) == (f"{trained:.4f}", f"{quantised:.4f}", f"{quantised - trained:+.4f}")
    notes = markdown.split("## Notes\n", 1)[1].split("\n## ", 1)[0]
    clipped_notes = [line for line in notes.splitlines() if "of trained entries clipped at ±0.05" in line]
    assert len(clipped_notes) == 2
    assert all("raise --clip or use --clip auto" in n for n in clipped_notes)

    result = write_report(folder)  # `infobound report` sees the same
    assert [q["rank"] for q in result["clipping"]] == [1, 2]
    assert all(q["clipped_mean"] > CLIP_NOTE_FRACTION for q in result["clipping"])


def test_auto_sweep_says_its_grid_clips_nothing_and_warns_nothing(tmp_path):
    folder = tmp_path / "auto"
    status, out, err = run_cli(["validate", "--out", str(folder), *TINY, "--clip", "auto"])
    assert status == 0, err
    clip = hand_clip(0.0, 20, 0.01)
    assert f"quantisation grid: [-{clip:g}, {clip:g}] (--clip auto" in out
    assert "warning" not in err
    markdown = (folder / "summary.md").read_text(encoding="utf-8")
    assert f"c = {clip:g} (--clip auto" in markdown and "by --clip auto" in markdown
    assert all(row[6] == "0.00%" for row in section(markdown))
    assert "clipped at" not in markdown.split("## Notes", 1)[-1]
    assert json.loads((folder / "sweep.json").read_text())["clip"] == clip
    assert {(r["clip"], r["clip_rule"]) for r in stored(folder)} == {(clip, "auto")}
    # the same number given by hand is the same sweep: nothing retrained, nothing refused
    status, out, err = run_cli(["validate", "--out", str(folder), *TINY, "--clip", repr(clip)])
    assert status == 0, err
    assert "0 records written" in out


def test_the_api_returns_the_configurations_that_clip(tmp_path):
    config = SweepConfig(modes=("b_only",), ranks=(1,), ns=(30,), seeds=2, bits=(8, None), steps=20, clip=0.05)
    result = validate(config, tmp_path / "api", progress=False)
    assert [(q["mode"], q["rank"], q["bits"]) for q in result["clipping"]] == [("b_only", 1, 8)]
    assert len(result["quantisation"]) == 1  # the unquantised records are not in the table
    assert any("clipped at ±0.05" in note for note in result["summary"].notes)
