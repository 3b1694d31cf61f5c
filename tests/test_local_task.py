"""The ``local`` task: a user's transformers model (tiny, random weights, built from a config) on
labelled data generated on disk — reading, defaults, every mode through the sweep and the store,
stacked replicas against separate runs, the PEFT export against PEFT's own forward, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from cli_helpers import run_cli  # noqa: E402
from local_fixtures import image_folder, image_model, task_file, text_csv, text_model  # noqa: E402

from infobound.errors import InputError  # noqa: E402
from infobound.harness.peft_export import export_peft_adapter, peft_model_of  # noqa: E402
from infobound.harness.store import RunStore  # noqa: E402
from infobound.harness.sweep import SweepConfig, run_group, run_sweep  # noqa: E402
from infobound.harness.tasks import canonical_task_name, get_task  # noqa: E402
from infobound.harness.train import evaluate_stacked, train_stacked  # noqa: E402
from infobound.lora import inject_lora  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    text_model(root / "model")
    text_csv(root / "data.csv", n=120)
    return task_file(root / "task.json", model="model", data="data.csv", max_length=10)


@pytest.fixture(scope="module")
def image_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    image_model(root / "vit")
    image_folder(root / "images", per_class=20)
    return task_file(root / "task.json", model="vit", data="images", test_fraction=0.3)


def _name(path) -> str:
    return f"local:{path}"


# ------------------------------------------------------------------------------ reading
def test_text_task_reads_the_csv_tokenizes_and_finds_its_targets(text_task):
    task = get_task(_name(text_task))
    rows = [line.split(",") for line in (text_task.parent / "data.csv").read_text().splitlines()[1:]]
    labels = np.array([int(r[1]) for r in rows])
    assert task.n_classes == 2 and task.d_in == 10 and task.tokens_per_example == 10
    assert task.max_n + len(task.test_indices) == 120 and len(task.test_indices) == 30
    assert set(task.target_indices).isdisjoint(task.test_indices)
    # stratified: the test set's class counts are the data's, scaled (within one example)
    test_counts = np.bincount(labels[task.test_indices], minlength=2)
    assert np.all(np.abs(test_counts - np.bincount(labels) * 30 / 120) <= 1)
    assert task.default_targets == ("query", "value", "classifier")
    x, y = task.test_set()
    assert torch.equal(y, torch.from_numpy(labels[task.test_indices]))
    # the first test row's ids: its words' positions in the vocabulary, then padding (id 0)
    words = rows[task.test_indices[0]][0].split()
    vocab = ["[PAD]", "[UNK]", *[f"w{i}" for i in range(12)]]
    expected = [vocab.index(w) for w in words][:10]
    assert x[0].tolist() == [float(v) for v in expected + [0] * (10 - len(expected))]
    text = task.describe()
    assert "not pretrained" in text and "dropout set to 0" in text and "120 labelled texts" in text


def test_a_relative_task_file_has_one_absolute_canonical_name(text_task, monkeypatch):
    monkeypatch.chdir(text_task.parent)
    assert canonical_task_name("local:task.json") == f"local:{text_task}"
    assert get_task("local:task.json").spec.path == text_task


def test_image_folder_task_reads_resizes_and_normalises(image_task):
    task = get_task(_name(image_task))
    assert task.classes == ["left", "right"] and task.d_in == 64 and task.tokens_per_example == 5
    assert task.default_targets == ("q_proj", "v_proj", "classifier")  # transformers 5 names ViT attention so
    x, y = task.test_set()
    assert len(x) == 12 and float(x.min()) >= -1 and float(x.max()) <= 1  # (p - 0.5) / 0.5 of p in [0, 1]
    images = x.reshape(-1, 8, 8)
    left = images[:, :, :4].mean(dim=(1, 2)) > images[:, :, 4:].mean(dim=(1, 2))
    assert torch.equal(left, y == 0)  # the generated classes: brighter on the left, or on the right


# ------------------------------------------------------------------------------ the network
def test_stacked_replicas_train_like_each_replica_alone(text_task):
    task = get_task(_name(text_task))
    x, y = task.train_set(24, 0)
    seeds = [5, 6]

    def trained(stack_seeds):
        model = task.base_model()
        inject_lora(model, task.default_targets, 2, mode="lora", stack=len(stack_seeds), seeds=stack_seeds)
        k = len(stack_seeds)
        train_stacked(model, x.expand(k, *x.shape), y.expand(k, -1), steps=8, lr=1e-2, batch_size=8, seed=3)
        xt, yt = task.test_set()
        return evaluate_stacked(model, xt.expand(k, *xt.shape), yt.expand(k, -1))

    together = trained(seeds)
    for k, s in enumerate(seeds):
        alone = trained([s])
        assert abs(together["loss"][k] - alone["loss"][0]) <= 1e-5
        assert np.array_equal(together["zero_one"][k], alone["zero_one"][0])


def test_base_model_loads_the_folder_weights_and_a_seeded_head(tmp_path):
    text_model(tmp_path / "m", weights=True, seed=11)
    text_csv(tmp_path / "d.csv", n=60)
    spec = task_file(tmp_path / "t.json", model="m", data="d.csv", max_length=8)
    from transformers import BertForSequenceClassification

    saved = BertForSequenceClassification.from_pretrained(str(tmp_path / "m"))
    task = get_task(_name(spec))
    one, two = task.base_model(), task.base_model()
    for name, p in saved.bert.named_parameters():
        assert torch.equal(dict(one.model.bert.named_parameters())[name], p), name
    assert torch.equal(one.model.classifier.weight, two.model.classifier.weight)  # seeded, repeatable
    assert "its weights" in task.describe() and "not pretrained" not in task.describe()


def test_peft_model_of_a_replica_computes_what_the_replica_computes(text_task, tmp_path):
    from peft import PeftModel

    task = get_task(_name(text_task))
    model = task.base_model()
    inject_lora(model, task.default_targets, 2, mode="b_only", alpha=6.0, stack=2, seeds=[1, 2])
    x, y = task.train_set(16, 1)
    train_stacked(model, x.expand(2, *x.shape), y.expand(2, -1), steps=5, lr=5e-2, seed=0)
    xt, _ = task.test_set()
    with torch.no_grad():
        ours = model(xt.expand(2, *xt.shape))[1]
        ids = xt.long()
        wrapped = peft_model_of(model, replica=1)
        theirs = wrapped(input_ids=ids, attention_mask=(ids != 0).long()).logits
        np.testing.assert_allclose(theirs.numpy(), ours.numpy(), atol=1e-5)
        # saved with PEFT's own save_pretrained, and loaded back onto the same base weights
        folder = export_peft_adapter(model, tmp_path / "adapter", replica=1)
        loaded = PeftModel.from_pretrained(task.base_model().model, str(folder))
        again = loaded(input_ids=ids, attention_mask=(ids != 0).long()).logits
    np.testing.assert_allclose(again.numpy(), ours.numpy(), atol=1e-5)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["lora_alpha"] == 6.0
    with pytest.raises(InputError, match="replica"):
        peft_model_of(model, replica=2)


def test_the_exported_adapter_counts_as_the_sweep_counts_it(text_task, tmp_path):
    task = get_task(_name(text_task))
    model = task.base_model()
    inject_lora(model, task.default_targets, 2, mode="lora", stack=1, seeds=[0])
    folder = export_peft_adapter(model, tmp_path / "a")
    code, out, err = run_cli(["peft", str(folder), "--base-config", str(folder / "base_model_config.json"), "--json"])
    assert code == 0, err
    # hand count: 2 layers × (query, value) of 16 -> 16 at rank 2, and the classifier 16 -> 2
    assert json.loads(out)["trainable_params"] == 4 * 2 * (16 + 16) + 2 * (16 + 2)


def test_an_exported_b_only_replica_is_charged_its_frozen_seed_only(text_task, tmp_path):
    from infobound.harness.sweep import frozen_seed
    from infobound.peft_bridge import B_ONLY_FILE

    task = get_task(_name(text_task))
    model = task.base_model()
    masters = [frozen_seed(3), frozen_seed(4)]
    inject_lora(model, task.default_targets, 2, mode="b_only", stack=2, seeds=masters)
    folder = export_peft_adapter(model, tmp_path / "b", replica=1)
    record = json.loads((folder / B_ONLY_FILE).read_text())
    assert record["seed"] == masters[1] and record["rule"] == "linear_modules"
    argv = ["peft", str(folder), "--base-config", str(folder / "base_model_config.json"),
            "--train-error", "0.2", "--n", "90", "--json"]
    code, out, err = run_cli(argv)
    assert code == 0, err
    result = json.loads(out)
    assert result["mode"] == "b_only" and result["trainable_params"] == 4 * 16 * 2 + 2 * 2  # B only, by hand
    assert result["certificate"]["seed"] == masters[1]
    # a record whose layer seeds do not follow from its seed is refused
    record["layers"] = {k: v + 1 for k, v in record["layers"].items()}
    (folder / B_ONLY_FILE).write_text(json.dumps(record))
    code, _, err = run_cli(argv)
    assert code == 2 and "does not follow from seed" in err


# ------------------------------------------------------------------------------ the sweep
def test_every_mode_runs_through_the_sweep_into_the_store(text_task, tmp_path):
    config = SweepConfig(task=_name(text_task), modes=("lora", "b_only", "a_only", "full"), ranks=(2,),
                         ns=(40,), seeds=2, steps=6, lr=1e-2, bits=(8, None))
    store = RunStore(tmp_path / "store")
    counts = run_sweep(config, store, progress=False)
    assert counts["written"] == 4 * 2 * 2 and len(store) == 16
    records = store.records()
    by_mode = {}
    for r in records:
        by_mode.setdefault(r["mode"], set()).add(r["trainable_params"])
        assert 0 <= r["test_error"] <= 1 and r["split"] == "per_seed"
    # hand counts: query and value of two blocks (16 -> 16) and the classifier (16 -> 2), rank 2
    assert by_mode == {"lora": {4 * 2 * 32 + 2 * 18}, "b_only": {4 * 16 * 2 + 2 * 2},
                       "a_only": {4 * 2 * 16 + 2 * 16}, "full": {4 * 256 + 32}}
    again = run_sweep(config, store, progress=False)  # everything stored: nothing runs again
    assert again["written"] == 0 and again["skipped"] == again["groups"]


def test_quantised_records_are_on_the_grid_and_certified(text_task):
    config = SweepConfig(task=_name(text_task), modes=("b_only",), ranks=(1,), ns=(30,), seeds=2, steps=4,
                         lr=1e-2, bits=(4,))
    records = run_group(config.groups()[0])
    assert len(records) == 2
    for r in records:
        assert r["bits"] == 4 and r["bound_applicable"] and 0 < r["bound"]
        assert r["cert_best"] >= r["train_error"] and r["code_length_bits"] > 0  # the run's own certificate


def test_image_task_runs_a_group(image_task):
    config = SweepConfig(task=_name(image_task), modes=("lora",), ranks=(1,), ns=(20,), seeds=2, steps=3,
                         lr=1e-2, bits=(None,))
    records = run_group(config.groups()[0])
    assert [r["seed"] for r in records] == [0, 1] and all(0 <= r["test_error"] <= 1 for r in records)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("entries, match", [
    ({"model": "model", "data": "nothere.csv"}, "does not exist"),
    ({"model": "nomodel", "data": "data.csv"}, "model .* does not exist"),
    ({"model": "model", "data": "data.csv", "colour": 1}, "unknown key.*colour"),
    ({"model": "model", "data": "data.csv", "label_column": "y"}, "no label column 'y'.*columns: text, label"),
    ({"model": "model", "data": "data.csv", "max_length": 0}, "max_length"),
    ({"model": "model", "data": "data.csv", "test_fraction": 1.5}, "test_fraction"),
    ({"data": "data.csv"}, '"model" must be a path'),
])
def test_bad_task_files_name_what_is_wrong(text_task, tmp_path, entries, match):
    root = text_task.parent
    spec = task_file(root / f"bad-{abs(hash(match))}.json", **entries)
    with pytest.raises(InputError, match=match):
        get_task(_name(spec))


def test_bad_data_and_models_are_refused(tmp_path):
    text_model(tmp_path / "m")
    (tmp_path / "one.csv").write_text("text,label\nw1 w2,a\nw3,a\nw4,a\n")
    with pytest.raises(InputError, match="1 class"):
        get_task(_name(task_file(tmp_path / "a.json", model="m", data="one.csv")))
    (tmp_path / "nomodel").mkdir()
    (tmp_path / "nomodel" / "config.json").write_text(json.dumps({"peft_type": "LORA"}))
    text_csv(tmp_path / "d.csv", n=20)
    with pytest.raises(InputError, match="not a transformers model config"):
        get_task(_name(task_file(tmp_path / "b.json", model="nomodel", data="d.csv")))
    image_model(tmp_path / "vit")  # a text task needs a tokenizer
    with pytest.raises(InputError, match="no tokenizer"):
        get_task(_name(task_file(tmp_path / "c.json", model="vit", data="d.csv")))
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    with pytest.raises(InputError, match="cannot read its config"):
        get_task(_name(task_file(tmp_path / "e.json", model="unknown", data="d.csv")))
    with pytest.raises(InputError, match="needs its task file"):
        get_task("local")


def test_the_cli_refuses_a_bad_task_file_with_one_line(tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(["validate", "--task", f"local:{tmp_path / 'missing.json'}", "--out", str(out)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing.json" in err
    assert not out.exists()
