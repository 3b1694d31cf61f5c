"""The asymmetry prediction against closed forms (THEORY §2) and a hand-computed forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infobound.harness.asymmetry import captured_fractions, effective_rank, layer_moments
from infobound.harness.tasks import get_task


def test_effective_rank_of_isotropic_and_rank_one():
    assert effective_rank(np.eye(7)) == pytest.approx(7.0)
    v = np.arange(1.0, 6.0)
    assert effective_rank(np.outer(v, v)) == pytest.approx(1.0)
    assert effective_rank(np.diag([1.0, 1.0, 0.0])) == pytest.approx(2.0)


def test_isotropic_inputs_give_r_over_d_for_both_factors():
    """Σ = I: E_Q[captured by B behind A] = r/d_in, E_U[captured by A behind B] = r/d_out (Haar
    expectations); the paper's orthonormal A is close to Haar, so a loose Monte-Carlo tolerance."""
    rng = np.random.default_rng(1)
    d_out, d_in, r = 12, 20, 3
    delta = rng.standard_normal((d_out, d_in))
    got = captured_fractions(delta, np.eye(d_in), r, draws=400, seed=2)
    assert got["b_only"] == pytest.approx(r / d_in, abs=4 * got["b_only_sd"] / np.sqrt(400) + 0.01)
    assert got["a_only"] == pytest.approx(r / d_out, abs=0.03)
    top = np.sort(np.linalg.svd(delta, compute_uv=False) ** 2)[::-1]
    assert got["best"] == pytest.approx(top[:r].sum() / top.sum())


def test_rank_r_inputs_let_b_capture_everything():
    """Σ of rank r: a trained B behind almost every frozen A reaches the noise floor (THEORY §2)."""
    rng = np.random.default_rng(3)
    d_out, d_in, r = 10, 16, 2
    basis = np.linalg.qr(rng.standard_normal((d_in, r)))[0]
    cov = 2.5 * basis @ basis.T
    delta = rng.standard_normal((d_out, d_in))
    got = captured_fractions(delta, cov, r, draws=20, seed=0)
    assert got["b_only"] == pytest.approx(1.0, abs=1e-8)
    assert got["best"] == pytest.approx(1.0, abs=1e-8)
    assert got["a_only"] < 0.6  # A behind a random B sees only r of d_out output directions


def test_layer_moments_match_a_hand_forward_pass():
    task = get_task("digits")
    moments = layer_moments(task, ["fc1", "fc2"], samples=300)
    model = task.base_model()
    x, _ = task.train_set(300, seed=0)
    with torch.no_grad():
        h = torch.relu(x.double() @ model.fc1.weight.double().T + model.fc1.bias.double())
    x64 = x.double().numpy()
    np.testing.assert_allclose(moments["fc1"][0], x64.T @ x64 / 300, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(moments["fc1"][1], x64.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(moments["fc2"][0], h.numpy().T @ h.numpy() / 300, rtol=1e-4, atol=1e-5)


def test_the_report_carries_the_prediction(tmp_path):
    from infobound.harness.sweep import SweepConfig
    from infobound.harness.validate import validate

    config = SweepConfig(modes=("b_only", "lora"), ranks=(1,), ns=(60,), seeds=2, steps=20, bits=(8,))
    validate(config, tmp_path / "out", progress=False)
    text = (tmp_path / "out" / "summary.md").read_text()
    section = text[text.index("## Predicting the asymmetry"):]
    section = section[:section.find("\n## ", 3) if "\n## " in section[3:] else len(section)]
    rows = [line for line in section.splitlines() if line.startswith("| digits |")]
    assert [row.split(" | ")[4] for row in rows] == ["fc1", "fc2"]
    for row in rows:
        cells = row.split(" | ")
        b_only, best = float(cells[7].split(" ± ")[0]), float(cells[9])
        assert 0.0 <= b_only <= best + 1e-9 <= 1.0 + 1e-9  # no rank-r update beats the best one
