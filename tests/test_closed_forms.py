"""Trained least-squares adapters against the closed forms of THEORY §2 (task linreg)."""

import numpy as np
import pytest
from scipy.optimize import minimize

from infobound.harness.closed_forms import best_rank_r_loss, linreg_losses
from infobound.harness.sweep import SweepConfig, run_group
from infobound.harness.tasks import get_task
from infobound.lora import inject_lora
from infobound.spec import Mode


def test_best_rank_r_loss_matches_direct_minimisation():
    rng = np.random.default_rng(3)
    d_out, d_in, r, s2 = 5, 7, 2, 0.3
    delta = rng.standard_normal((d_out, d_in))
    m = rng.standard_normal((d_in, d_in))
    cov = m @ m.T / d_in + 0.1 * np.eye(d_in)

    def loss(theta):  # written independently: Tr[(Δ − BA) Σ (Δ − BA)ᵀ] + d_out s²
        b, a = theta[: d_out * r].reshape(d_out, r), theta[d_out * r:].reshape(r, d_in)
        res = delta - b @ a
        return np.einsum("ij,jk,ik->", res, cov, res) + d_out * s2

    best = min(minimize(loss, rng.standard_normal(r * (d_in + d_out)), method="BFGS",
                        options={"gtol": 1e-10}).fun for _ in range(5))
    assert best_rank_r_loss(delta, cov, s2, r) == pytest.approx(best, rel=1e-7)
    assert best_rank_r_loss(delta, cov, s2, min(d_in, d_out)) == pytest.approx(d_out * s2, rel=1e-12)


@pytest.mark.parametrize("mode", ["b_only", "a_only", "lora", "full"])
def test_trained_adapters_reach_the_closed_form_optimum(mode):
    config = SweepConfig(task="linreg", modes=(mode,), ranks=(2,), ns=(4000,), seeds=3, bits=(None,),
                         steps=400, lr=1e-2)
    records = run_group(config.groups()[0])
    for rec in records:
        # The optimum given the run's frozen factor is a lower bound on any adapter of that mode …
        assert rec["population_loss"] >= rec["optimal_loss"] - 1e-9
        # … and training on 4,000 samples gets within 1% of it.
        assert rec["population_loss"] <= 1.01 * rec["optimal_loss"]
        # the held-out test loss estimates the population loss (5,000 test samples)
        assert rec["test_loss"] == pytest.approx(rec["population_loss"], rel=0.05)


def test_haar_expectation_of_a_only_matches_monte_carlo_over_frozen_draws():
    task = get_task("linreg")
    k, r = 200, 2
    model = task.base_model()
    inject_lora(model, task.default_targets, r, mode="a_only", stack=k, seeds=list(range(k)))
    losses = linreg_losses(task, model, Mode.A_ONLY)
    optimal = np.array(losses["optimal_loss"])
    expected = losses["expected_loss"][0]
    se = optimal.std(ddof=1) / np.sqrt(k)
    assert abs(optimal.mean() - expected) < 4 * se
    # the untrained A (zero) leaves the loss at W0: Tr[Δ Σ Δᵀ] + d_out s², in task units
    start = (np.trace(task.delta @ task.cov @ task.delta.T) + task.d_out * task.noise_var) / task.d_out
    assert np.allclose(losses["population_loss"], start, rtol=1e-6)
