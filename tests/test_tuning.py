"""Choosing (lr, steps) on held-out training data: against a brute force of separate runs, the split, the price in bits, bad input."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from infobound.errors import InputError
from infobound.harness.train import evaluate_stacked, train_stacked
from infobound.harness.tuning import (
    MAX_TUNE_STEPS,
    Candidates,
    Selection,
    best_index,
    parse_lrs,
    parse_steps,
    select,
    validation_split,
)
from infobound.lora import inject_lora

pytestmark = pytest.mark.usefixtures("one_thread")

K, N, D, H, C = 3, 30, 8, 10, 3
SEEDS = [11, 12, 13]
LRS = (3e-3, 3e-2, 1e-1)
STEPS = (5, 20, 60)


def build_model(d_out: int = C) -> nn.Module:
    """The base MLP (fixed random weights) with LoRA on fc1, K replicas."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(D, H), act=nn.Tanh(), fc2=nn.Linear(H, d_out)))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))
    inject_lora(model, ("fc1",), rank=2, mode="lora", stack=K, seeds=SEEDS)
    return model


def data(regression: bool = False, n: int = N):
    """Labels from a random linear teacher plus noise, so learning rates and step counts differ."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(K, n, D, generator=gen)
    teacher = torch.randn(D, C, generator=gen)
    scores = x @ teacher + 0.7 * torch.randn(K, n, C, generator=gen)
    if regression:
        return x, scores[..., :2]
    return x, scores.argmax(dim=-1)


def brute_force(x, y, candidates, loss, batch_size=None, seed=0):
    """Every (lr, steps) trained from scratch for exactly that many steps, evaluated on the last n_val."""
    n_fit, n_val = validation_split(x.shape[1], candidates.validation_fraction)
    errors, losses = [], []
    for lr, steps in candidates.pairs():
        model = build_model(C if loss == "cross_entropy" else 2)
        train_stacked(model, x[:, :n_fit], y[:, :n_fit], steps=steps, lr=lr, loss=loss, seed=seed,
                      batch_size=batch_size)
        metrics = evaluate_stacked(model, x[:, n_fit:], y[:, n_fit:], loss=loss)
        losses.append(float(metrics["loss"].mean()))
        errors.append(float(metrics["zero_one"].sum()) / (K * n_val) if loss == "cross_entropy" else math.nan)
        if loss == "cross_entropy":  # the same as the mean of the replicas' error rates, up to rounding
            assert errors[-1] == pytest.approx(float(metrics["error"].mean()), rel=0, abs=1e-15)
    if loss == "cross_entropy":
        keys = [(not math.isfinite(lo), round(e * K * n_val), lo, lr, s)
                for e, lo, (lr, s) in zip(errors, losses, candidates.pairs())]
    else:
        keys = [(not math.isfinite(lo), lo, lr, s) for lo, (lr, s) in zip(losses, candidates.pairs())]
    best = min(range(len(keys)), key=lambda c: keys[c])
    return best, np.array(errors), np.array(losses)


@pytest.mark.parametrize("batch_size", [None, 8])
def test_selection_equals_brute_force_cross_entropy(batch_size):
    x, y = data()
    candidates = Candidates(LRS, STEPS)
    chosen = select(build_model, x, y, candidates, loss="cross_entropy", seed=4, batch_size=batch_size)
    best, errors, losses = brute_force(x, y, candidates, "cross_entropy", batch_size=batch_size, seed=4)
    assert chosen.index == best
    assert (chosen.lr, chosen.steps) == candidates.pairs()[best]
    np.testing.assert_array_equal(chosen.validation_errors, errors)  # wrong counts over K·n_val: exact
    np.testing.assert_allclose(chosen.validation_losses, losses, rtol=0, atol=1e-6)
    assert len(set(errors.tolist())) > 1, "the candidates should not all tie"


def test_selection_equals_brute_force_mse():
    x, y = data(regression=True)
    candidates = Candidates(LRS, STEPS, validation_fraction=0.3)
    model2 = lambda: build_model(2)
    chosen = select(model2, x, y, candidates, loss="mse", seed=0)
    best, errors, losses = brute_force(x, y, candidates, "mse")
    assert chosen.index == best and np.isnan(chosen.validation_errors).all() and np.isnan(errors).all()
    np.testing.assert_allclose(chosen.validation_losses, losses, rtol=0, atol=1e-6)


def test_step_counts_on_one_trajectory_equal_separate_runs_bit_for_bit():
    """The value at s steps, evaluated as the run passes s, is that of a run of exactly s steps."""
    x, y = data()
    candidates = Candidates((3e-2,), (1, 7, 25), validation_fraction=0.25)
    chosen = select(build_model, x, y, candidates, loss="cross_entropy", seed=9, batch_size=5)
    n_fit = chosen.n_fit
    for j, steps in enumerate(candidates.steps):
        model = build_model()
        train_stacked(model, x[:, :n_fit], y[:, :n_fit], steps=steps, lr=3e-2, seed=9, batch_size=5)
        metrics = evaluate_stacked(model, x[:, n_fit:], y[:, n_fit:])
        assert chosen.validation_losses[j] == float(metrics["loss"].mean())
        assert chosen.validation_errors[j] == float(metrics["zero_one"].sum()) / (K * chosen.n_val)


def test_validation_part_is_exactly_the_last_rows_and_nothing_else_enters():
    """Every input the models see, recorded: evaluations (eval mode) see exactly the last n_val rows of
    each replica's training set, training steps exactly the first n_fit; nothing else is passed."""
    x, y = data()
    candidates = Candidates((1e-2, 2e-2), (3,))
    n_fit, n_val = validation_split(N, 0.2)
    assert (n_fit, n_val) == (24, 6)
    seen = {"fit": [], "val": []}

    def spy_model():
        model = build_model()

        def record(module, args):
            seen["fit" if module.training else "val"].append(args[0].clone())

        model.register_forward_pre_hook(record)
        return model

    select(spy_model, x, y, candidates, loss="cross_entropy", seed=0)
    assert len(seen["val"]) == 2 and all(torch.equal(t, x[:, n_fit:]) for t in seen["val"])
    steps = [t for t in seen["fit"] if t.shape[1] != 1]  # shape 1: train_stacked's check of the labels
    assert len(steps) == 6 and all(torch.equal(t, x[:, :n_fit]) for t in steps)
    assert all(torch.equal(t, x[:, :1]) for t in seen["fit"] if t.shape[1] == 1)


def test_bits_and_record():
    x, y = data()
    candidates = Candidates([1e-1, 3e-3, 3e-2, 3e-3], "60, 5,20")
    assert candidates.lrs == LRS and candidates.steps == STEPS  # sorted, duplicates gone
    assert candidates.size == 9 and candidates.bits == math.log2(9) and candidates.total_steps == 180
    assert candidates.pairs()[4] == (LRS[1], STEPS[1])
    assert Candidates((1e-2, 2e-2, 3e-2), (10,)).bits == math.log2(3)
    ticks = []
    chosen = select(build_model, x, y, candidates, loss="cross_entropy", seed=0, progress=ticks.append)
    assert ticks == list(range(candidates.total_steps))
    assert isinstance(chosen, Selection) and chosen.bits == math.log2(9) and chosen.seconds > 0
    record = chosen.as_record()
    assert set(record) == {"tune_lr", "tune_steps", "tune_candidates", "tune_bits", "tune_n_fit", "tune_n_val",
                           "tune_lrs", "tune_steps_grid", "tune_validation_errors", "tune_validation_losses"}
    assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in record.values())
    assert (record["tune_lr"], record["tune_steps"]) == (chosen.lr, chosen.steps)
    assert record["tune_candidates"] == 9 and record["tune_bits"] == math.log2(9)
    assert (record["tune_n_fit"], record["tune_n_val"]) == (24, 6)
    assert parse_lrs(record["tune_lrs"]) == LRS and parse_steps(record["tune_steps_grid"]) == STEPS
    assert [float(v) for v in record["tune_validation_errors"].split(",")] == chosen.validation_errors.tolist()
    assert [float(v) for v in record["tune_validation_losses"].split(",")] == chosen.validation_losses.tolist()
    arrays = chosen.as_arrays()
    np.testing.assert_array_equal(arrays["tune_validation_losses"], chosen.validation_losses)
    assert arrays["tune_steps_grid"].dtype == np.int64 and arrays["tune_lrs"].tolist() == list(LRS)


def test_one_candidate_costs_nothing_and_trains_once():
    x, y = data()
    built, ticks = [], []

    def counted():
        built.append(1)
        return build_model()

    candidates = Candidates(1e-2, 15)
    chosen = select(counted, x, y, candidates, loss="cross_entropy", seed=0, progress=ticks.append)
    assert candidates.size == 1 and candidates.bits == 0.0 and chosen.bits == 0.0
    assert len(built) == 1 and len(ticks) == 15
    assert (chosen.lr, chosen.steps, chosen.index) == (1e-2, 15, 0)
    assert chosen.as_record()["tune_bits"] == 0.0


def test_ties_go_to_lower_loss_then_smaller_lr_then_fewer_steps():
    """A zero learning-rate effect: with lr tiny every candidate predicts alike; the ranking then
    falls to the loss, and with equal losses to the index (smaller lr, fewer steps)."""
    x, y = data()
    chosen = select(build_model, x, y, Candidates((1e-12, 2e-12), (1, 2)), loss="cross_entropy", seed=0)
    assert len(set(chosen.validation_errors.tolist())) == 1
    order = min(range(4), key=lambda c: (chosen.validation_losses[c], c))
    assert chosen.index == order

    # an untrained adapter (lora_B starts at 0) at any lr in a model whose fc1 has no effect: exact ties
    def dead_model():
        model = build_model()
        with torch.no_grad():
            model.fc2.weight.zero_()
        return model

    chosen = select(dead_model, x, y, Candidates((1e-3, 1e-2), (2, 4)), loss="cross_entropy", seed=0)
    assert len(set(chosen.validation_losses.tolist())) == 1 and chosen.index == 0
    assert (chosen.lr, chosen.steps) == (1e-3, 2)


def test_ranking_rule():
    nan, inf = math.nan, math.inf
    # errors first, then the loss, then the index (smaller lr, then fewer steps)
    assert best_index(np.array([3, 2, 2, 5]), np.array([0.1, 0.9, 0.8, 0.0])) == 2
    assert best_index(np.array([2, 2, 2]), np.array([0.5, 0.4, 0.4])) == 1
    # a diverged candidate (non-finite loss) loses to every finite one, whatever its error
    assert best_index(np.array([0, 4, 3]), np.array([nan, 1.0, 2.0])) == 2
    assert best_index(np.array([0, 1]), np.array([inf, nan])) == 0  # all diverged: the fewest wrong
    # mse: the loss, then the index
    assert best_index(None, np.array([0.3, 0.2, 0.2, nan])) == 1
    assert best_index(None, np.array([nan, inf])) == 0


def test_selection_is_read_only():
    x, y = data()
    chosen = select(build_model, x, y, Candidates((1e-2,), (2, 3)), loss="cross_entropy", seed=0)
    with pytest.raises(ValueError):
        chosen.validation_losses[0] = 0.0
    with pytest.raises(AttributeError):
        chosen.lr = 1.0
    assert chosen != select(build_model, x, y, Candidates((1e-2,), (2, 3)), loss="cross_entropy", seed=0)


def test_validation_split():
    assert validation_split(10, 0.2) == (8, 2)
    assert validation_split(10, 0.25) == (7, 3)  # 2.5 rounds up
    assert validation_split(2, 0.01) == (1, 1)  # at least one held out
    assert validation_split(100, 0.5) == (50, 50)
    for fraction in (0.2, 0.5, 0.75, 0.9, 0.99):
        with pytest.raises(InputError) as info:
            validation_split(1, fraction)
        smallest = int(str(info.value).rsplit("at least ", 1)[1].split()[0])
        assert "n (training examples per replica) = 1" in str(info.value) and f"{fraction:g}" in str(info.value)
        validation_split(smallest, fraction)
        with pytest.raises(InputError):
            validation_split(smallest - 1, fraction)
    with pytest.raises(InputError, match="validation_fraction"):
        validation_split(10, 1.0)


@pytest.mark.parametrize("kwargs, words", [
    ({"lrs": (), "steps": (10,)}, "lr candidates must hold at least one value"),
    ({"lrs": (1e-2,), "steps": []}, "steps candidates must hold at least one value"),
    ({"lrs": (1e-2, 0.0), "steps": (10,)}, "lr candidates must be a finite number > 0, got 0.0"),
    ({"lrs": (-1e-2,), "steps": (10,)}, "lr candidates must be a finite number > 0"),
    ({"lrs": (float("nan"),), "steps": (10,)}, "lr candidates must be a finite number > 0, got nan"),
    ({"lrs": (float("inf"),), "steps": (10,)}, "lr candidates"),
    ({"lrs": ("fast",), "steps": (10,)}, "lr candidates"),
    ({"lrs": (1e-2,), "steps": (0, 10)}, "steps candidates must be an integer in [1, 10,000,000], got 0"),
    ({"lrs": (1e-2,), "steps": (2.5,)}, "steps candidates"),
    ({"lrs": (1e-2,), "steps": (MAX_TUNE_STEPS + 1,)}, "steps candidates must be an integer in [1, 10,000,000]"),
    ({"lrs": (1e-2,), "steps": (10,), "validation_fraction": 0.0}, "validation_fraction must be a finite number in (0, 1)"),
    ({"lrs": (1e-2,), "steps": (10,), "validation_fraction": 1}, "validation_fraction must be a finite number in (0, 1)"),
    ({"lrs": None, "steps": (10,)}, "lr candidates"),
])
def test_bad_candidates(kwargs, words):
    with pytest.raises(InputError) as info:
        Candidates(**kwargs)
    assert words in str(info.value)


def test_parse_functions_name_the_option():
    assert parse_lrs("3e-3,1e-2,3e-2") == (3e-3, 1e-2, 3e-2)
    assert parse_steps("1000, 100,1e3") == (100, 1000)
    with pytest.raises(InputError, match="--tune-lrs must be learning rates .* got 'x'"):
        parse_lrs("1e-2,x")
    with pytest.raises(InputError, match="--tune-steps must hold at least one value"):
        parse_steps(" , ")
    with pytest.raises(InputError, match="--tune-steps must be an integer in"):
        parse_steps("0")
    with pytest.raises(InputError, match="--tune-steps must be step counts .* got '1.5x'"):
        parse_steps("1.5x")


def test_bad_select_input():
    x, y = data()
    good = Candidates((1e-2,), (2,))
    cases = [
        ({"x_train": x[0], "y_train": y}, "x_train must be a float tensor of shape (K, n, d)"),
        ({"x_train": x, "y_train": y[:, :-1]}, "y_train must be an int64 tensor of class labels of shape (K, n) = (3, 30)"),
        ({"x_train": x, "y_train": y[:2]}, "y_train must be an int64 tensor"),
        ({"x_train": x, "y_train": y.float()}, "y_train must be an int64 tensor"),
        ({"x_train": x[:, :1], "y_train": y[:, :1]}, "n (training examples per replica) = 1 is too small"),
        ({"x_train": x, "y_train": y, "candidates": (1e-2, 2)}, "candidates must be a Candidates"),
        ({"x_train": x, "y_train": y, "seed": -1}, "seed must be an integer"),
        ({"x_train": x, "y_train": y, "loss": "hinge"}, "loss must be one of cross_entropy, mse"),
        ({"x_train": x, "y_train": y, "batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"x_train": x, "y_train": y, "progress": 3}, "progress must be a callable"),
        ({"x_train": x, "y_train": y, "eval_batch_size": 0}, "eval_batch_size must be an integer >= 1"),
        ({"x_train": x, "y_train": y, "build_model": build_model()}, "build_model must be a callable"),
        ({"x_train": x, "y_train": y, "build_model": lambda: 3}, "build_model must return a torch.nn.Module"),
        ({"x_train": x[:2], "y_train": y[:2]}, "x_train must be a float tensor of shape (K=3, n, d)"),  # the model's K
        ({"x_train": x, "y_train": torch.randn(K, N + 1, 2), "loss": "mse"}, "y_train must be a float tensor of targets"),
    ]
    for change, words in cases:
        args = {"build_model": build_model, "x_train": x, "y_train": y, "candidates": good, "loss": "cross_entropy", "seed": 0}
        args.update(change)
        with pytest.raises(InputError) as info:
            select(args.pop("build_model"), args.pop("x_train"), args.pop("y_train"), args.pop("candidates"), **args)
        assert words in str(info.value), (change, str(info.value))


def test_batch_reaching_the_fit_part_is_full_batch_and_chunked_evaluation_agrees():
    x, y = data()
    candidates = Candidates((3e-2,), (4,))
    full = select(build_model, x, y, candidates, loss="cross_entropy", seed=0)
    big = select(build_model, x, y, candidates, loss="cross_entropy", seed=0, batch_size=N)
    np.testing.assert_array_equal(full.validation_losses, big.validation_losses)
    chunked = select(build_model, x, y, candidates, loss="cross_entropy", seed=0, eval_batch_size=4)
    np.testing.assert_allclose(chunked.validation_losses, full.validation_losses, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(chunked.validation_errors, full.validation_errors)
