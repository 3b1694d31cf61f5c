"""Tasks of the harness against independent references.

References: scikit-learn's ``load_digits`` read here and transformed with plain numpy (``np.fliplr``,
``np.flipud``, ``np.rot90``, ``.T``) and its class counts; label accuracy counted by hand; a numpy
forward pass of the teacher written out here; ``np.linalg`` ranks, singular values and eigenvalues;
Monte-Carlo moments of the regression data with standard errors from the Gaussian (Wishart)
variance formulas; a fresh Python process for determinism.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from infobound.errors import InputError
from infobound.harness import tasks
from infobound.harness.tasks import (
    DigitsConfig,
    LinregConfig,
    TeacherConfig,
    clear_pretrain_cache,
    get_task,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL_LINREG = dict(d_in=6, d_out=3, delta_rank=2, delta_norm=1.5, cov_decay=0.5, noise_std=0.7, seed=1)


@pytest.fixture(scope="module")
def digits():
    return get_task("digits")


@pytest.fixture(scope="module")
def teacher():
    return get_task("teacher")


@pytest.fixture(scope="module")
def linreg():
    return get_task("linreg", **SMALL_LINREG)


@pytest.fixture(scope="module")
def raw_digits():
    data = load_digits()
    return data.images / 16.0, data.target


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(np.mean(model(x).argmax(-1).numpy() == y.numpy()))


# ---------------------------------------------------------------------------- registry, input
def test_unknown_task_lists_the_tasks():
    with pytest.raises(InputError) as err:
        get_task("cifar")
    assert all(name in str(err.value) for name in ("digits", "teacher", "linreg", "mnist", "cifar"))


def test_default_task_is_digits():
    assert get_task().name == "digits" and isinstance(get_task().config, DigitsConfig)


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("digits", {"transform": "rotate90"}, "transform"),
        ("digits", {"test_fraction": 1.5}, "test_fraction"),
        ("digits", {"hidden": 0}, "hidden"),
        ("digits", {"seed": -1}, "seed"),
        ("digits", {"colour": 1}, "colour"),
        ("teacher", {"delta_rank": 33}, "delta_rank"),
        ("teacher", {"delta_layers": ("head",)}, "delta_layers"),
        ("teacher", {"n_classes": 1}, "n_classes"),
        ("linreg", {"cov_eigenvalues": (1.0, 2.0)}, "cov_eigenvalues"),
        ("linreg", {"noise_std": float("nan")}, "noise_std"),
        ("linreg", {"cov_decay": 0.0}, "cov_decay"),
        ("linreg", {"cov_basis": "diagonal"}, "cov_basis"),
        ("linreg", {"delta_rank": 17}, "delta_rank"),
    ],
)
def test_bad_settings_name_the_field(name, overrides, field):
    with pytest.raises(InputError, match=field):
        get_task(name, **overrides)


def test_config_of_another_task_is_refused():
    with pytest.raises(InputError, match="LinregConfig"):
        get_task("linreg", TeacherConfig())


@pytest.mark.parametrize("fixture", ["digits", "teacher", "linreg"])
def test_train_set_size_limits(fixture, request):
    task = request.getfixturevalue(fixture)
    too_many = task.max_n + 1
    with pytest.raises(InputError) as err:
        task.train_set(too_many, seed=0)
    assert str(too_many) in str(err.value) and str(task.max_n) in str(err.value) and "n " in str(err.value)
    for bad in (0, -3):
        with pytest.raises(InputError, match=rf"\bn\b.*got {bad}"):
            task.train_set(bad, seed=0)
    with pytest.raises(InputError, match="seed"):
        task.train_set(5, seed=-1)


# -------------------------------------------------------------------------------------- digits
def test_digits_split_sizes_disjoint_and_stratified(digits, raw_digits):
    _, labels = raw_digits
    parts = [digits.pretrain_indices, digits.target_indices, digits.test_indices]
    assert [len(p) for p in parts] == [718, 719, 360]  # the sizes the docs state
    assert sum(len(p) for p in parts) == 1797 == len(labels)
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == 1797 and set(joined) == set(range(1797))
    assert digits.max_n == 719
    counts = np.bincount(labels, minlength=10)  # stratified: each class in proportion, to within 1
    for part, share in zip(parts, (0.4, 0.4, 0.2)):
        assert np.all(np.abs(np.bincount(labels[part], minlength=10) - share * counts) <= 1.0 + 1e-9)


def test_digits_train_sets_are_seeded_subsets_of_the_pool(digits, raw_digits):
    images, labels = raw_digits
    idx = digits.train_indices(100, seed=3)
    assert len(np.unique(idx)) == 100 and np.isin(idx, digits.target_indices).all()
    assert not np.isin(idx, digits.test_indices).any() and not np.isin(idx, digits.pretrain_indices).any()
    x, y = digits.train_set(100, seed=3)
    assert x.dtype == torch.float32 and x.shape == (100, 64) and y.dtype == torch.int64
    expected = np.stack([np.fliplr(images[i]) for i in idx]).reshape(100, 64)  # the mirror, by hand
    np.testing.assert_array_equal(x.numpy(), expected.astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), labels[idx])
    x2, y2 = digits.train_set(100, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    other = digits.train_indices(100, seed=4)
    assert set(other) != set(idx)
    np.testing.assert_array_equal(digits.train_indices(40, seed=3), idx[:40])  # prefix-consistent
    full = digits.train_indices(digits.max_n, seed=9)
    np.testing.assert_array_equal(np.sort(full), np.sort(digits.target_indices))


@pytest.mark.parametrize(
    "transform, by_hand",
    [("mirror", np.fliplr), ("flip", np.flipud), ("rotate180", lambda a: np.rot90(a, 2)), ("transpose", np.transpose)],
)
def test_digits_test_set_is_the_transformed_held_out_images(transform, by_hand, raw_digits):
    images, labels = raw_digits
    task = get_task("digits", transform=transform)
    x, y = task.test_set()
    expected = np.stack([by_hand(images[i]) for i in task.test_indices]).reshape(-1, 64).astype(np.float32)
    np.testing.assert_array_equal(x.numpy(), expected)
    np.testing.assert_array_equal(y.numpy(), labels[task.test_indices])
    xs, _ = task.source_test_set()
    np.testing.assert_array_equal(xs.numpy(), images[task.test_indices].reshape(-1, 64).astype(np.float32))


def test_digits_pretrained_net_is_good_on_source_and_bad_on_target(digits):
    model = digits.base_model()
    source = _accuracy(model, *digits.source_test_set())
    target = _accuracy(model, *digits.test_set())
    assert source > 0.9  # measured 95.6 %
    assert target < source - 0.2  # measured 39.7 %: the mirror costs over 50 points
    x, y = digits.pretrain_set()
    assert _accuracy(model, x, y) > 0.97
    text = digits.describe()
    assert all(s in text for s in ("718", "719", "360", "mirror"))


# ------------------------------------------------------------------------------ every network
@pytest.mark.parametrize("fixture", ["digits", "teacher", "linreg"])
def test_networks_take_stacked_inputs_and_have_linear_targets(fixture, request):
    task = request.getfixturevalue(fixture)
    model = task.base_model()
    modules = dict(model.named_modules())
    for name in task.default_targets:
        assert isinstance(modules[name], nn.Linear)
    assert all(isinstance(m, (nn.Linear, nn.ReLU, nn.Sequential)) for m in modules.values())
    xs = [task.train_set(7, seed=s)[0] for s in range(3)]
    with torch.no_grad():
        stacked = model(torch.stack(xs))  # (K, batch, d_in) -> (K, batch, d_out)
        separate = torch.stack([model(x) for x in xs])
    assert stacked.shape == (3, 7, task.d_out)
    torch.testing.assert_close(stacked, separate, rtol=1e-5, atol=1e-5)  # float32 rounding only


@pytest.mark.parametrize("fixture", ["digits", "teacher", "linreg"])
def test_base_model_copies_are_identical_and_independent(fixture, request):
    task = request.getfixturevalue(fixture)
    first, second = task.base_model(), task.base_model()
    assert _digest(first) == _digest(second)
    reference = {k: v.clone() for k, v in second.state_dict().items()}
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)
    for key, value in second.state_dict().items():
        assert torch.equal(value, reference[key])
    assert _digest(task.base_model()) == _digest(second)


def test_pretraining_is_deterministic_across_cache_clears_and_processes(digits, monkeypatch):
    monkeypatch.setenv("INFOBOUND_CACHE", "off")  # retrain, in this process and the child: no disk cache
    in_process = _digest(digits.base_model())
    clear_pretrain_cache(digits.config)
    assert _digest(digits.base_model()) == in_process
    script = (
        "import hashlib; from infobound.harness.tasks import get_task\n"
        "m = get_task('digits').base_model(); h = hashlib.sha256()\n"
        "for k, v in sorted(m.state_dict().items()):\n"
        "    h.update(k.encode()); h.update(v.contiguous().numpy().tobytes())\n"
        "print(h.hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == in_process


def test_building_tasks_leaves_global_random_state_alone():
    torch_state, numpy_state, threads = torch.get_rng_state(), np.random.get_state(), torch.get_num_threads()
    for name, small in [("digits", dict(pretrain_steps=7)), ("teacher", dict(pretrain_steps=7, pretrain_samples=300)),
                        ("linreg", {})]:
        task = get_task(name, **small)
        clear_pretrain_cache(task.config)
        task.describe()  # the first use pretrains
        task.train_set(5, seed=1)
        task.test_set()
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    assert torch.get_num_threads() == threads


def test_pretraining_under_no_grad_gives_the_same_network(monkeypatch):
    monkeypatch.setenv("INFOBOUND_CACHE", "off")  # each clear retrains (no disk cache)
    task = get_task("digits", pretrain_steps=30)
    clear_pretrain_cache(task.config)
    reference = _digest(task.base_model())
    clear_pretrain_cache(task.config)
    with torch.no_grad():  # a caller inside no_grad still gets a trained network
        assert _digest(task.base_model()) == reference
    untrained = get_task("digits", pretrain_steps=0)
    assert _digest(untrained.base_model()) != reference


# ------------------------------------------------------------------------------------- teacher
def _teacher_labels(weights: dict, x: np.ndarray) -> np.ndarray:
    relu = lambda z: np.where(z > 0, z, 0.0)  # noqa: E731
    hidden = relu(relu(x @ weights["fc1"].T) @ weights["fc2"].T)
    return np.argmax(hidden @ weights["head"].T + weights["head_bias"], axis=1)


def test_teacher_labels_and_low_rank_change(teacher):
    cfg = teacher.config
    source, target = teacher.source_teacher, teacher.target_teacher
    delta = target["fc1"] - source["fc1"]
    singular = np.linalg.svd(delta, compute_uv=False)
    assert np.linalg.matrix_rank(delta) == cfg.delta_rank == 2
    np.testing.assert_allclose(singular[:2], cfg.delta_scale * np.linalg.norm(source["fc1"], 2), rtol=1e-10)
    for name in ("fc2", "head", "head_bias"):
        np.testing.assert_array_equal(target[name], source[name])
    x, y_target = teacher.test_set()
    xs, y_source = teacher.source_test_set()
    assert torch.equal(x, xs) and x.shape == (cfg.test_size, cfg.d_in)
    x64 = x.numpy().astype(np.float64)  # labels come from the float64 draw: rounding to float32 may flip a near-tie
    assert np.mean(_teacher_labels(target, x64) == y_target.numpy()) > 0.999
    assert np.mean(_teacher_labels(source, x64) == y_source.numpy()) > 0.999
    changed = float(np.mean(y_source.numpy() != y_target.numpy()))
    assert 0.15 < changed < 0.6  # measured 30 %
    shares = np.bincount(y_source.numpy(), minlength=cfg.n_classes) / cfg.test_size
    assert shares.min() > 0.1  # the calibrated head bias keeps every class present


def test_teacher_train_sets(teacher):
    x, y = teacher.train_set(4000, seed=2)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (4000, 16)
    x2, y2 = teacher.train_set(4000, seed=2)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = teacher.train_set(1000, seed=2)
    assert torch.equal(x3, x[:1000])
    assert not torch.equal(teacher.train_set(1000, seed=3)[0], x3)
    test_x, _ = teacher.test_set()  # the test set's stream differs even for the config's own seed
    same_seed = teacher.train_set(teacher.config.test_size, seed=teacher.config.seed)[0]
    assert not np.isin(same_seed.numpy()[:, 0], test_x.numpy()[:, 0]).any()
    z = x.numpy().astype(np.float64)  # N(0, I): moments within 5 standard errors
    assert np.abs(z.mean(axis=0)).max() < 5 / np.sqrt(4000)
    assert np.abs(np.cov(z.T) - np.eye(16)).max() < 5 * np.sqrt(2 / 4000)
    assert np.mean(_teacher_labels(teacher.target_teacher, z) == y.numpy()) > 0.999


def test_teacher_pretrained_student_prefers_the_source(teacher):
    model = teacher.base_model()
    source = _accuracy(model, *teacher.source_test_set())
    target = _accuracy(model, *teacher.test_set())
    assert source > 0.75  # measured 85 %
    assert target < source - 0.1  # measured 67 %


# -------------------------------------------------------------------------------------- linreg
def test_linreg_parameters(linreg):
    cfg = linreg.config
    expected = 0.5 ** np.arange(6)
    expected *= 6 / expected.sum()
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(linreg.cov))[::-1], expected, rtol=1e-10)
    np.testing.assert_allclose(linreg.cov, linreg.cov.T, atol=1e-14)
    assert np.linalg.matrix_rank(linreg.delta) == 2
    np.testing.assert_allclose(np.linalg.norm(linreg.delta), cfg.delta_norm, rtol=1e-12)
    np.testing.assert_array_equal(linreg.w_target, linreg.w0 + linreg.delta)
    weight = linreg.base_model().layer.weight.detach().numpy().astype(np.float64)
    np.testing.assert_array_equal(weight, linreg.w0)
    assert linreg.noise_var == pytest.approx(0.49) and linreg.loss_kind == "mse"
    assert linreg.base_model().layer.bias is None


def test_linreg_explicit_spectrum_in_the_identity_basis():
    values = (3.0, 1.0, 0.5, 0.0)
    task = get_task("linreg", d_in=4, d_out=2, delta_rank=1, cov_eigenvalues=values, cov_basis="identity")
    np.testing.assert_array_equal(task.cov, np.diag(values))
    x, _ = task.train_set(50, seed=0)
    assert torch.all(x[:, 3] == 0)  # a zero eigenvalue: that coordinate never varies


def test_linreg_data_has_the_stated_covariance_noise_and_loss(linreg):
    n = 40_000
    x, y = linreg.train_set(n, seed=5)
    x64, y64 = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
    cov = linreg.cov
    sample = x64.T @ x64 / n  # E x = 0, so the raw second moment estimates Σ
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)  # Var of (x_i x_j) for a Gaussian
    assert np.all(np.abs(sample - cov) < 5 * se + 1e-6)
    residual = y64 - x64 @ linreg.w_target.T
    s2 = linreg.noise_var
    np.testing.assert_allclose(residual.var(axis=0), s2, atol=5 * s2 * np.sqrt(2 / n))
    assert np.abs(residual.mean(axis=0)).max() < 5 * np.sqrt(s2 / n)
    cross = residual.T @ x64 / n  # independent of x: E[ε xᵀ] = 0
    assert np.all(np.abs(cross) < 5 * np.sqrt(s2 * np.diag(cov) / n)[None, :])
    # The base model's mse (mean over outputs) against THEORY's L at W0, divided by d_out.
    with torch.no_grad():
        per_example = ((linreg.base_model()(x) - y) ** 2).double().mean(dim=1).numpy()
    theory = (np.trace(linreg.delta @ cov @ linreg.delta.T) + linreg.d_out * s2) / linreg.d_out
    assert linreg.loss_scale == pytest.approx(1 / 3)
    assert abs(per_example.mean() - theory) < 5 * per_example.std() / np.sqrt(n)


def test_linreg_sets_are_seeded_and_distinct(linreg):
    x, y = linreg.train_set(200, seed=0)
    x2, y2 = linreg.train_set(200, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert torch.equal(linreg.train_set(50, seed=0)[1], y[:50])
    assert not torch.equal(linreg.train_set(200, seed=1)[0], x)
    tx, ty = linreg.test_set()
    assert tx.shape == (5000, 6) and ty.shape == (5000, 3) and ty.dtype == torch.float32
    sx, sy = linreg.source_test_set()
    assert torch.equal(sx, tx) and not torch.equal(sy, ty)
    same_seed = linreg.train_set(5000, seed=linreg.config.seed)[0]
    assert not np.isin(same_seed.numpy()[:, 0], tx.numpy()[:, 0]).any()


def test_registry_matches_the_classes():
    assert set(tasks.TASKS) == {"digits", "teacher", "linreg", "mnist", "local"} and tasks.DEFAULT_TASK == "digits"
    assert isinstance(get_task("linreg", LinregConfig(d_in=3, d_out=2, delta_rank=1)), tasks.LinregTask)
