"""Seeds that redraw their split (split ``per_seed``), task names NAME/MODEL:SHIFT, minibatch sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infobound.errors import InputError
from infobound.harness.sweep import GroupConfig, SweepConfig, effective_batch, plan_sweep, run_group
from infobound.harness.tasks import canonical_task_name, get_task, split_task_name
from infobound.spec import Mode

pytestmark = pytest.mark.usefixtures("one_thread")


def _group(**kw):
    base = dict(task="digits", mode=Mode.LORA, rank=2, n=60, seeds=(0, 1, 2), bits=(None,), alpha=None,
                init="orthonormal", steps=20, lr=1e-2, clip=4.0, targets=None)
    return GroupConfig(**{**base, **kw})


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


# ------------------------------------------------------------------------------- Task.resplit
def test_resplit_draws_disjoint_sets_from_data_never_pretrained_on():
    task = get_task("digits")
    (x_tr, y_tr), (x_te, y_te) = task.resplit(300, seed=3)
    assert x_tr.shape == (300, 64) and x_te.shape[0] == len(task.test_indices)
    assert not _rows(x_tr) & _rows(x_te)
    pretrain = _rows(task._data(task.pretrain_indices)[0])
    assert not (_rows(x_tr) | _rows(x_te)) & pretrain
    allowed = _rows(task._data(np.concatenate([task.target_indices, task.test_indices]))[0])
    assert _rows(x_tr) | _rows(x_te) <= allowed


def test_resplit_differs_by_seed_and_is_deterministic_and_prefix_consistent():
    task = get_task("digits")
    (a, _), (ta, _) = task.resplit(100, seed=0)
    (b, _), (tb, _) = task.resplit(100, seed=1)
    (c, _), (tc, _) = task.resplit(200, seed=0)
    assert not torch.equal(ta, tb) and not torch.equal(a, b)
    assert torch.equal(ta, tc) and torch.equal(c[:100], a)
    assert torch.equal(task.resplit(100, seed=0)[0][0], a)


def test_resplit_reaches_max_n_and_refuses_beyond():
    task = get_task("digits")
    (x, _), _ = task.resplit(task.max_n, seed=0)
    assert x.shape[0] == task.max_n
    with pytest.raises(InputError, match=r"n must be an integer in \[1, "):
        task.resplit(task.max_n + 1, seed=0)


def test_task_without_resplit_says_which_tasks_can():
    with pytest.raises(InputError, match="per_seed.*digits, mnist"):
        get_task("teacher").resplit(10, 0)


# ------------------------------------------------------------------------------- in a sweep
def test_per_seed_group_tests_each_seed_on_its_own_test_set():
    """The recorded test error of each replica equals the error of that replica on its own resplit
    test set, counted here by hand from a separate (unstacked) evaluation."""
    group = _group(split="per_seed")
    records = run_group(group)
    fixed = run_group(_group())
    assert all(r["split"] == "per_seed" for r in records)
    task = get_task("digits")
    assert {r["test_n"] for r in records} == {len(task.test_indices)}
    # the same seeds under split fixed train on other subsets: the results differ
    assert [r["test_error"] for r in records] != [r["test_error"] for r in fixed]
    keys = {r["key"] for r in records} & {r["key"] for r in fixed}
    assert not keys  # per_seed records never collide with fixed ones in a store


def test_per_seed_records_match_an_unstacked_rerun_on_the_resplit():
    from infobound.lora import inject_lora
    from infobound.harness.train import evaluate_stacked, train_stacked

    group = _group(split="per_seed", seeds=(0, 1))
    records = run_group(group)
    task = get_task("digits")
    for i, seed in enumerate(group.seeds):
        (x, y), (xt, yt) = task.resplit(group.n, seed)
        model = task.base_model()
        inject_lora(model, task.default_targets, group.rank, mode="lora", stack=1,
                    seeds=[group.frozen_seeds()[i]])
        train_stacked(model, x[None], y[None], steps=group.steps, lr=group.lr, seed=seed)
        got = evaluate_stacked(model, xt[None], yt[None])["error"][0]
        # the stacked group used seed 0's batches for all replicas: full batch, so the same
        assert got == pytest.approx(records[i]["test_error"], abs=2.5 / len(yt))


def test_split_keys_fixed_keep_their_old_form():
    fixed = _group().run_config(0, None)
    assert "split" not in fixed and "batch_size" not in fixed
    per = _group(split="per_seed", batch_size=16).run_config(0, None)
    assert per["split"] == "per_seed" and per["batch_size"] == 16


def test_split_per_seed_refused_for_cmi_and_unknown_split():
    with pytest.raises(InputError, match="split 'per_seed' applies to kind 'seeds'"):
        SweepConfig(kind="cmi", split="per_seed")
    with pytest.raises(InputError, match="split must be one of auto, fixed, per_seed"):
        SweepConfig(split="sometimes")


def test_validate_refuses_per_seed_for_a_task_that_cannot_resplit(tmp_path):
    from infobound.harness.validate import validate

    with pytest.raises(InputError, match="per_seed"):
        validate(SweepConfig(task="teacher", split="per_seed", ranks=(1,), ns=(50,), seeds=2), tmp_path / "o",
                 progress=False)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_report_says_what_per_seed_intervals_cover(finish_sweep):
    done = finish_sweep(SweepConfig(modes=(Mode.LORA, Mode.B_ONLY), ranks=(1,), ns=(50,), seeds=3, steps=10,
                                    split="per_seed"), "per_seed_report")
    text = (done["folder"] / "summary.md").read_text()
    assert "each seed redraws its own split" in text
    assert "one test set fixed" not in text


# ------------------------------------------------------------------------------- minibatches
def test_effective_batch():
    assert effective_batch(None, 50) is None
    assert effective_batch(64, 50) is None and effective_batch(50, 50) is None
    assert effective_batch(16, 50) == 16


def test_batch_size_trains_minibatches_and_is_recorded():
    full = run_group(_group(seeds=(0,)))
    mini = run_group(_group(seeds=(0,), batch_size=16))
    assert mini[0]["batch_size"] == 16 and full[0]["batch_size"] is None
    assert mini[0]["train_loss"] != full[0]["train_loss"]


def test_plan_counts_minibatch_flops():
    from infobound.harness.store import RunStore

    class Empty:
        def missing(self, keys):
            return list(keys)

    layers = __import__("infobound.harness.sweep", fromlist=["linear_layers"]).linear_layers(get_task("digits").base_model())
    full = plan_sweep(SweepConfig(ranks=(1,), ns=(400,), seeds=2), Empty(), layers, 360, 1)
    mini = plan_sweep(SweepConfig(ranks=(1,), ns=(400,), seeds=2, batch_size=40), Empty(), layers, 360, 1)
    weights = sum(l.d_in * l.d_out for l in layers)
    groups = len(SweepConfig(ranks=(1,), ns=(400,), seeds=2).groups())
    assert full.flops - mini.flops == pytest.approx(groups * 2 * 6.0 * weights * (400 - 40) * 300)
    assert RunStore  # the plan reads only store.missing


# ------------------------------------------------------------------------------- task names
@pytest.mark.parametrize("name, parts", [
    ("digits", ("digits", None, None)), ("digits:flip", ("digits", None, "flip")),
    ("mnist/vit", ("mnist", "vit", None)), ("mnist/vit:permute", ("mnist", "vit", "permute")),
])
def test_split_task_name(name, parts):
    assert split_task_name(name) == parts


@pytest.mark.parametrize("name, message", [
    ("mnst", "task must be one of"), ("mnist/", "model after '/' is empty"),
    ("mnist:", "shift after ':' is empty"), ("digits/vit", "task 'digits' has no model setting"),
    ("teacher:flip", "task 'teacher' has no shift setting"),
])
def test_bad_task_names(name, message):
    with pytest.raises(InputError, match=message):
        get_task(name)


def test_canonical_task_name_drops_the_default_model():
    assert canonical_task_name("mnist/mlp:permute") == "mnist:permute"
    assert canonical_task_name("mnist/vit:permute") == "mnist/vit:permute"
    assert canonical_task_name("digits:flip") == "digits:flip"
