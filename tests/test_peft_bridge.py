"""infobound.peft_bridge: PEFT LoRA models and transformers configs to AdapterSpec, B-only with PEFT.

Every model is a tiny random-weight model built from a config (nothing is downloaded); the counts
are checked against PEFT's own ``get_nb_trainable_parameters``.
"""

from __future__ import annotations

import json
import time
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from peft import LoraConfig, get_peft_model  # noqa: E402

from infobound import hf_models  # noqa: E402
from infobound.errors import InputError  # noqa: E402
from infobound.extras import MissingExtra  # noqa: E402
from infobound.lora import derive_seed, draw_factor  # noqa: E402
from infobound.peft_bridge import (  # noqa: E402
    B_ONLY_ATTRIBUTE, check_b_only, describe_peft, make_b_only, spec_from_hf_config, spec_from_peft)
from infobound.presets import preset_spec  # noqa: E402
from infobound.spec import Mode  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

ROBERTA = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100)


def peft_count(model) -> int:
    return model.get_nb_trainable_parameters()[0]


def roberta(**lora):
    torch.manual_seed(0)
    base = transformers.RobertaForSequenceClassification(transformers.RobertaConfig(**ROBERTA))
    config = dict(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    config.update(lora)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_peft_model(base, LoraConfig(**config))


def suffixes(model) -> set[str]:
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


# ------------------------------------------------------------------------------- spec_from_peft
def test_roberta_seq_cls_counts_the_classifier_as_peft_does():
    model = roberta()
    spec = spec_from_peft(model, bits=8)
    assert spec.trainable_params == peft_count(model)
    assert spec.mode is Mode.LORA and spec.rank == 4 and spec.bits == 8
    assert len(spec.layers) == 4 and all((l.d_in, l.d_out) == (32, 32) for l in spec.layers)
    assert spec.layers[0].name == "roberta.encoder.layer.0.attention.self.query"
    head = sum(p.numel() for p in model.base_model.model.classifier.modules_to_save["default"].parameters())
    assert dict(spec.extra) == {"modules_to_save:classifier": head}


def test_rank_pattern_and_rslora_scaling():
    model = roberta(use_rslora=True, rank_pattern={"layer.0.attention.self.query": 2})
    report = describe_peft(model)
    assert report.spec.trainable_params == peft_count(model)
    ranks = [report.spec.layer_rank(l) for l in report.spec.layers]
    assert ranks == [2, 4, 4, 4]
    assert report.rslora
    assert report.scaling["roberta.encoder.layer.0.attention.self.query"] == pytest.approx(8 / 2 ** 0.5)
    assert report.scaling["roberta.encoder.layer.1.attention.self.value"] == pytest.approx(8 / 4 ** 0.5)
    assert any("rsLoRA" in note for note in report.notes)


@pytest.mark.parametrize("options, keys", [
    (dict(use_dora=True, bias="lora_only"), {"dora_magnitude", "bias"}),
    (dict(lora_bias=True, bias="all"), {"lora_bias", "bias"}),
])
def test_dora_and_bias_variants_count_their_trained_tensors(options, keys):
    model = roberta(**options)
    spec = spec_from_peft(model)
    assert spec.trainable_params == peft_count(model)
    assert keys <= set(spec.extra)
    if "dora_magnitude" in keys:
        assert spec.extra["dora_magnitude"] == sum(l.d_out for l in spec.layers)
    if "lora_bias" in keys:
        assert spec.extra["lora_bias"] == sum(l.d_out for l in spec.layers)


def test_llama_with_grouped_query_attention():
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, vocab_size=100)
    torch.manual_seed(0)
    model = get_peft_model(transformers.LlamaForCausalLM(config),
                           LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "k_proj", "v_proj"]))
    spec = spec_from_peft(model)
    assert spec.trainable_params == peft_count(model)
    dims = {l.name.rsplit(".", 1)[-1]: (l.d_in, l.d_out) for l in spec.layers}
    assert dims == {"q_proj": (32, 32), "k_proj": (32, 8), "v_proj": (32, 8)}  # 1 KV head of 4
    assert not spec.extra


@pytest.mark.parametrize("saved", [None, ["classification_head"]])
def test_bart_classification_head_trains_only_when_saved(saved):
    config = transformers.BartConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                     vocab_size=100, max_position_embeddings=64)
    torch.manual_seed(0)
    base = transformers.BartForSequenceClassification(config)
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"],
                                            modules_to_save=None if saved is None else list(saved)))
    spec = spec_from_peft(model)
    assert spec.trainable_params == peft_count(model)
    assert len(spec.layers) == 6  # encoder self, decoder self and cross attention
    head = 32 * 32 + 32 + 32 * config.num_labels + config.num_labels  # dense + out_proj, with biases
    if saved is None:  # SEQ_CLS saves "classifier" and "score"; BART's head has another name
        assert not spec.extra
    else:
        assert dict(spec.extra) == {"modules_to_save:classification_head": head}


def test_vit_attention_names_discovered_from_the_model():
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, image_size=16, patch_size=8, num_labels=3)
    torch.manual_seed(0)
    base = transformers.ViTForImageClassification(config)
    names = suffixes(base)
    targets = ["query", "value"] if {"query", "value"} <= names else ["q_proj", "v_proj"]
    assert set(targets) <= names
    model = get_peft_model(base, LoraConfig(r=4, target_modules=targets, modules_to_save=["classifier"]))
    spec = spec_from_peft(model)
    assert spec.trainable_params == peft_count(model)
    assert len(spec.layers) == 4
    assert dict(spec.extra) == {"modules_to_save:classifier": 32 * 3 + 3}


def test_injected_model_without_peft_model_wrapper():
    torch.manual_seed(0)
    base = transformers.RobertaModel(transformers.RobertaConfig(**ROBERTA))
    model = peft.inject_adapter_in_model(LoraConfig(r=2, target_modules=["query"]), base)
    spec = spec_from_peft(model)
    assert spec.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * 2 * 64
    assert spec.layers[0].name == "encoder.layer.0.attention.self.query"


def test_refusals():
    model = roberta()
    with pytest.raises(InputError, match="'other' is not an adapter.*'default'"):
        spec_from_peft(model, adapter_name="other")
    with pytest.raises(InputError, match="no PEFT LoRA layer"):
        spec_from_peft(transformers.RobertaModel(transformers.RobertaConfig(**ROBERTA)))
    layer = model.base_model.model.roberta.encoder.layer[0].attention.self.query
    layer.lora_A["default"].weight.requires_grad_(False)  # one layer b_only, the others lora
    with pytest.raises(InputError, match="do not train the same factors.*irregular"):
        spec_from_peft(model)
    layer.lora_B["default"].weight.requires_grad_(False)
    with pytest.raises(InputError, match="no factor"):
        spec_from_peft(model)


def test_vera_is_refused_by_name():
    torch.manual_seed(0)
    base = transformers.RobertaModel(transformers.RobertaConfig(**ROBERTA))
    model = get_peft_model(base, peft.VeraConfig(r=4, target_modules=["query", "value"]))
    with pytest.raises(InputError, match="VERA adapter.*scaling vectors"):
        spec_from_peft(model)


def test_a_second_trainable_adapter_is_refused():
    model = roberta()
    model.add_adapter("two", LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"]))
    for name, p in model.named_parameters():
        if ".two." in name:
            p.requires_grad_(True)
    with pytest.raises(InputError, match="another adapter|adapter 'two'"):
        spec_from_peft(model)


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setattr(hf_models, "missing", lambda modules: ["peft"])
    with pytest.raises(MissingExtra, match=r"needs peft.*infobound\[hf\]"):
        spec_from_peft(object())


# ------------------------------------------------------------------------------------ B-only
def test_make_b_only_draws_seeded_orthonormal_rows_and_freezes_them():
    model, again = roberta(), roberta()
    record = make_b_only(model, seed=7)
    assert record["seed"] == 7 and getattr(model, B_ONLY_ATTRIBUTE)["default"]["seed"] == 7
    make_b_only(again, seed=7)
    layers = [(n, m) for n, m in model.base_model.model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    for index, (name, layer) in enumerate(layers):
        a = layer.lora_A["default"].weight
        assert not a.requires_grad and layer.lora_B["default"].weight.requires_grad
        assert torch.allclose(a.double() @ a.double().T, torch.eye(4, dtype=torch.float64), atol=1e-6)
        expected = draw_factor("A", 32, 32, 4, "orthonormal", derive_seed(7, index)).float()
        assert torch.equal(a, expected) and record["layers"][name] == derive_seed(7, index)
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)  # same seed, same draws (the rest is torch.manual_seed(0))
    report = describe_peft(model)
    assert report.spec.mode is Mode.B_ONLY and report.b_only_seed == 7
    assert report.spec.trainable_params == peft_count(model)
    assert model.get_model_status().requires_grad == {"default": "irregular"}
    assert check_b_only(model)["seed"] == 7


def test_set_adapter_re_enables_lora_a_and_check_b_only_refuses():
    model = roberta()
    make_b_only(model, seed=1)
    model.set_adapter("default")  # PEFT sets requires_grad on every factor of the adapter again
    assert model.get_model_status().requires_grad == {"default": True}
    with pytest.raises(InputError, match=r"trains again.*make_b_only\(model, 1.*requires_grad"):
        check_b_only(model)
    assert spec_from_peft(model).mode is Mode.LORA  # the spec follows what trains
    make_b_only(model, seed=1)
    assert check_b_only(model)["seed"] == 1


def test_check_b_only_refuses_a_changed_or_never_drawn_factor():
    model = roberta()
    with pytest.raises(InputError, match="call make_b_only"):
        check_b_only(model)
    make_b_only(model, seed=2)
    layer = model.base_model.model.roberta.encoder.layer[1].attention.self.value
    with torch.no_grad():
        layer.lora_A["default"].weight.mul_(1.5)
    with pytest.raises(InputError, match="differs from its seeded draw"):
        check_b_only(model)
    assert describe_peft(model).b_only_seed is None


def test_lora_fa_style_frozen_a_reads_b_only_without_a_seed():
    model = roberta()
    for name, p in model.named_parameters():
        if "lora_A" in name:
            p.requires_grad_(False)
    report = describe_peft(model)
    assert report.spec.mode is Mode.B_ONLY and report.b_only_seed is None
    assert report.spec.trainable_params == peft_count(model)
    assert any("no recorded seed" in note for note in report.notes)


# ------------------------------------------------------------------------- spec_from_hf_config
LLAMA_2_7B = dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)
ROBERTA_LARGE = dict(model_type="roberta", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                     num_attention_heads=16, vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)
BART_LARGE = dict(model_type="bart", d_model=1024, encoder_layers=12, decoder_layers=12, encoder_ffn_dim=4096,
                  decoder_ffn_dim=4096, encoder_attention_heads=16, decoder_attention_heads=16, vocab_size=50265)
VIT_BASE = dict(model_type="vit", hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, image_size=224, patch_size=16)


def test_llama_2_7b_config_on_meta_matches_the_preset():
    spec_from_hf_config({**LLAMA_2_7B, "num_hidden_layers": 1}, "q_proj", 1, "lora")  # imports, once
    start = time.perf_counter()
    spec = spec_from_hf_config(LLAMA_2_7B, "q_proj,v_proj", 8, "lora")
    assert time.perf_counter() - start < 10
    preset = preset_spec("llama-2-7b", "q_proj,v_proj", rank=8, mode="lora")
    assert spec.trainable_params == preset.trainable_params == 4_194_304
    assert [(l.d_in, l.d_out) for l in spec.layers] == [(l.d_in, l.d_out) for l in preset.layers]
    assert spec.layers[0].name == "layers.0.self_attn.q_proj"  # AutoModel: no task head, no "model."
    every = spec_from_hf_config(LLAMA_2_7B, "all-linear", 8, "b_only")
    assert every.trainable_params == preset_spec("llama-2-7b", "all-linear", rank=8, mode="b_only").trainable_params


@pytest.mark.parametrize("preset, config, targets", [
    ("roberta-large", ROBERTA_LARGE, "query,value"),
    ("roberta-large", ROBERTA_LARGE, "all-linear"),
    ("bart-large", BART_LARGE, "q_proj,v_proj"),
    ("bart-large", BART_LARGE, "all-linear"),
])
def test_seq_cls_configs_match_the_presets_layer_by_layer(preset, config, targets):
    spec = spec_from_hf_config(config, targets, 8, "lora", auto_class="AutoModelForSequenceClassification")
    expected = preset_spec(preset, targets, rank=8)
    assert spec.trainable_params == expected.trainable_params
    assert sorted(spec.layers, key=lambda l: l.name) == sorted(expected.layers, key=lambda l: l.name)


@pytest.mark.parametrize("targets", ["q_proj,v_proj", "all-linear"])
def test_vit_config_matches_the_preset_layer_by_layer(targets):
    spec = spec_from_hf_config(VIT_BASE, targets, 8, "lora", auto_class="AutoModelForImageClassification")
    expected = preset_spec("vit-base-patch16-224", targets, rank=8)
    assert spec.trainable_params == expected.trainable_params
    assert sorted(spec.layers, key=lambda l: l.name) == sorted(expected.layers, key=lambda l: l.name)


def test_vit_presets_accept_the_transformers_4_attention_names():
    old = preset_spec("vit-base-patch16-224", "query,value", rank=8)
    assert old.layers == preset_spec("vit-base-patch16-224", "q_proj,v_proj", rank=8).layers
    assert len(old.layers) == 24 and old.trainable_params == 24 * 8 * (768 + 768)


def test_hf_config_from_a_file_and_bad_input(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA_2_7B, "num_hidden_layers": 2, "architectures": ["LlamaForCausalLM"]}))
    assert spec_from_hf_config(tmp_path, "v_proj", 4, "b_only").trainable_params == 2 * 4 * 4096
    assert spec_from_hf_config(path, ["v_proj"], 4, "b_only").trainable_params == 2 * 4 * 4096
    with pytest.raises(InputError, match="does not exist"):
        spec_from_hf_config(tmp_path / "absent.json", "q_proj", 8, "lora")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    with pytest.raises(InputError, match="not a transformers model config.*adapter_config"):
        spec_from_hf_config(tmp_path / "adapter_config.json", "q_proj", 8, "lora")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="not readable JSON"):
        spec_from_hf_config(tmp_path / "broken.json", "q_proj", 8, "lora")
    with pytest.raises(InputError, match="'no-such-model' is not known"):
        spec_from_hf_config({"model_type": "no-such-model"}, "q_proj", 8, "lora")
    with pytest.raises(InputError, match="'query' matches no linear module.*q_proj, k_proj, v_proj"):
        spec_from_hf_config(path, "query", 8, "lora")
    with pytest.raises(InputError, match="auto_class"):
        spec_from_hf_config(path, "q_proj", 8, "lora", auto_class="BertModel")


# ----------------------------------------------------------------------------------------- CLI
def write_adapter(folder, **config):
    folder.mkdir(parents=True, exist_ok=True)
    data = {"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 8, "lora_alpha": 16,
            "target_modules": ["query", "value"], "base_model_name_or_path": "roberta-large"}
    data.update(config)
    (folder / "adapter_config.json").write_text(json.dumps(data))
    return folder


def test_cli_peft_counts_a_saved_adapter_on_its_base_config(tmp_path, capsys):
    from infobound.cli import main

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(ROBERTA_LARGE))
    adapter = write_adapter(tmp_path / "adapter", rank_pattern={"layer.0.attention.self.query": 4})
    assert main(["peft", str(adapter), "--base-config", str(base), "--json", "--n", "50000"]) == 0
    record = json.loads(capsys.readouterr().out)
    head = 1024 * 1024 + 1024 + 1024 * 2 + 2  # RobertaClassificationHead, 2 labels (modules_to_save)
    assert record["trainable_params"] == preset_spec("roberta-large", rank=8).trainable_params - 4 * 2048 + head
    assert record["extra"] == {"modules_to_save:classifier": head} and record["n"] == 50000
    assert main(["peft", str(adapter), "--base-config", str(base / "config.json")]) == 0
    assert "seed bound" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [
    ("no-adapter", "adapter config .* does not exist"),
    ("vera", "is a VERA adapter"),
    ("bad-target", "does not fit the base model"),
    ("no-base", "model config .* does not exist"),
])
def test_cli_peft_bad_input_is_one_line_and_status_2(tmp_path, capsys, case, message):
    from infobound.cli import main

    (tmp_path / "config.json").write_text(json.dumps({**ROBERTA_LARGE, "num_hidden_layers": 1}))
    adapter = {"no-adapter": lambda: tmp_path / "absent",
               "vera": lambda: write_adapter(tmp_path / "a", peft_type="VERA"),
               "bad-target": lambda: write_adapter(tmp_path / "a", target_modules=["q_proj"]),
               "no-base": lambda: write_adapter(tmp_path / "a")}[case]()
    base = tmp_path / ("nothing" if case == "no-base" else "config.json")
    assert main(["peft", str(adapter), "--base-config", str(base)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("infobound: error: ")
    assert __import__("re").search(message, err), err


def test_cli_bound_from_an_hf_config_equals_the_preset(tmp_path, capsys):
    import json

    from infobound.cli import main

    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA_2_7B))
    argv = ["bound", "--targets", "q_proj,v_proj", "--rank", "8", "--n", "10000", "--json"]
    assert main([*argv, "--hf-config", str(path)]) == 0
    lines = lambda: [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # noqa: E731
    from_config = lines()
    assert main([*argv, "--preset", "llama-2-7b"]) == 0
    from_preset = lines()
    pick = lambda out: [(b["mode"], b["trainable_params"], b["bound"]) for b in out]  # noqa: E731
    assert len(from_config) == 4 and pick(from_config) == pick(from_preset)
    assert from_config[0]["model"].startswith("model of ") and from_config[0]["trainable_params"] == 4194304


@pytest.mark.parametrize("extra, message", [
    ([], "--hf-config needs --targets"),
    (["--targets", "query"], "q_proj"),
])
def test_cli_bound_hf_config_bad_input(tmp_path, capsys, extra, message):
    import json

    from infobound.cli import main

    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA_2_7B))
    assert main(["bound", "--hf-config", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_bound_hf_config_missing_file(tmp_path, capsys):
    from infobound.cli import main

    assert main(["bound", "--hf-config", str(tmp_path / "nope.json"), "--targets", "q_proj"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.json" in err[0]


# ---------------------------------------------------------------------------------- certificate
from infobound.certificates import certificate  # noqa: E402
from infobound.codelength import Grid, adapter_code_length_from_values  # noqa: E402
from infobound.harness.codes import adaptive_grids  # noqa: E402
from infobound.peft_bridge import peft_certificate, quantise_adapter  # noqa: E402


def trained_roberta(seed=3):
    """The tiny RoBERTa with LoRA whose lora_B holds small seeded values, as if trained."""
    model = roberta()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def saved_tensors(model, folder):
    """The adapter's tensors read back by hand from save_pretrained's safetensors file (name -> float64)."""
    from safetensors.torch import load_file

    model.save_pretrained(folder)
    return {k: v.double().numpy() for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}


def delta_bits(m):
    """Elias-delta length of m >= 1, written out."""
    w = m.bit_length()
    return (w - 1) + 2 * (w.bit_length() - 1) + 1


def test_peft_certificate_equals_an_independent_code_of_the_saved_tensors(tmp_path):
    model = trained_roberta()
    result = peft_certificate(model, 0.1, 1000)
    by_hand = saved_tensors(model, tmp_path)
    assert len(by_hand) == 12  # 4 layers x (A, B) + the classifier's 4 tensors
    grids = adaptive_grids()
    assert result.grid in grids and result.grid_candidates == 24
    independent = adapter_code_length_from_values(by_hand, result.grid, grid_candidates=24)
    assert result.code_length_bits == pytest.approx(independent.total_bits, abs=1e-9)
    assert result.items["grid"] == pytest.approx(__import__("math").log2(24)) and result.items["seed"] == 0
    payload = sorted(v for k, v in result.items.items() if k.endswith(".payload"))
    assert payload == sorted(v for k, v in independent.items.items() if k.endswith(".payload"))
    # the chosen grid has the smallest largest quantisation error among the 24
    worst = lambda g: max(float(abs(g.values(g.indices(x)) - x).max()) for x in by_hand.values())  # noqa: E731
    assert result.max_quantisation_error == pytest.approx(worst(result.grid))
    assert result.max_quantisation_error == pytest.approx(min(worst(g) for g in grids))
    # (b) the certificate at the recorded bits
    bits = __import__("math").ceil(result.code_length_bits - 1e-9)
    cert = certificate(0.1, 1000, bits, 0.05)
    assert (result.occam_kl, result.binomial, result.best) == (cert.occam_kl, cert.binomial, cert.best)
    assert result.certificate.bits == bits and result.n == 1000 and result.delta == 0.05
    assert "QUANTISED" in result.note and "0-1 error" in result.note
    json.dumps(result.to_dict())


def test_quantise_then_certify_on_the_same_grid():
    model = trained_roberta()
    grid = Grid(8, 0.5)
    before = peft_certificate(model, 0.1, 1000, grid=grid)
    assert before.items["grid"] == 0 and before.max_quantisation_error > 1e-4
    worst = quantise_adapter(model, grid)
    assert worst == pytest.approx(before.max_quantisation_error)
    after = peft_certificate(model, 0.1, 1000, grid=grid, grid_candidates=24)
    assert after.max_quantisation_error < 1e-6  # grid points cast to float32
    assert after.code_length_bits == pytest.approx(before.code_length_bits + __import__("math").log2(24))


def test_b_only_code_is_shorter_by_a_minus_the_seed(tmp_path):
    grid = Grid(8, 1.0)
    model = trained_roberta()
    make_b_only(model, seed=7)
    seeded = peft_certificate(model, 0.05, 2000, grid=grid)
    by_hand = saved_tensors(model, tmp_path)
    everything = adapter_code_length_from_values(by_hand, grid)
    a_names = [k for k in by_hand if ".lora_A." in k]
    assert len(a_names) == 4
    a_bits = sum(v for k, v in everything.items.items() if k.rsplit(".", 1)[0] in a_names)
    header = delta_bits(len(by_hand)) - delta_bits(len(by_hand) - len(a_names))  # the tensor count
    seed_bits = delta_bits(7 + 1)
    assert seeded.seed == 7 and seeded.seed_bits == seed_bits == seeded.items["seed"]
    assert seeded.code_length_bits == pytest.approx(everything.total_bits - a_bits - header + seed_bits, abs=1e-9)
    assert len(seeded.quantisation_errors) == 8 and not any(".lora_A." in k for k in seeded.quantisation_errors)
    assert "seed 7" in seeded.note
    # the same frozen A without make_b_only's record is coded like the rest
    delattr(model.get_base_model(), B_ONLY_ATTRIBUTE)
    unseeded = peft_certificate(model, 0.05, 2000, grid=grid)
    assert unseeded.seed is None and unseeded.code_length_bits == pytest.approx(everything.total_bits, abs=1e-9)


def test_peft_certificate_refuses_a_retrained_a_and_bad_input():
    model = trained_roberta()
    make_b_only(model, seed=1)
    model.set_adapter("default")
    with pytest.raises(InputError, match="trains again"):
        peft_certificate(model, 0.1, 100)
    model = trained_roberta()
    for kwargs, message in [(dict(train_error=1.5, n=10), "train_error"), (dict(train_error=0.1, n=0), "n must"),
                            (dict(train_error=0.1, n=10, delta=0), "delta"),
                            (dict(train_error=0.1, n=10, tolerance=1e-9), "no adaptive grid"),
                            (dict(train_error=0.1, n=10, grid=(8, 1.0), tolerance=0.1), "tolerance applies")]:
        with pytest.raises(InputError, match=message):
            peft_certificate(model, **kwargs)


def test_cli_peft_certificate_from_the_saved_weights(tmp_path, capsys):
    from infobound.cli import main

    model = trained_roberta()
    by_hand = saved_tensors(model, tmp_path / "adapter")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", **ROBERTA}))
    argv = ["peft", str(tmp_path / "adapter"), "--base-config", str(tmp_path / "config.json")]
    assert main(argv + ["--train-error", "0.1", "--n", "1000", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    expected = peft_certificate(model, 0.1, 1000)
    cert = record["certificate"]
    assert cert["code_length_bits"] == pytest.approx(expected.code_length_bits)
    assert cert["best"] == expected.best and cert["grid"] == expected.grid.to_dict() and cert["delta"] == 0.05
    assert len(cert["quantisation_errors"]) == len(by_hand)
    assert main(argv + ["--train-error", "0.1", "--n", "1000", "--delta", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "seed bound" in out and "certificate (delta 0.01" in out and "QUANTISED" in out


def test_cli_peft_charges_a_saved_b_only_record_its_seed_only(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from infobound.cli import main
    from infobound.peft_bridge import B_ONLY_FILE, save_b_only_record

    grid_free = ["--train-error", "0.1", "--n", "1000", "--json"]
    model = trained_roberta()
    make_b_only(model, seed=7)
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    save_b_only_record(model, folder)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", **ROBERTA}))
    argv = ["peft", str(folder), "--base-config", str(tmp_path / "config.json")]
    assert main(argv + grid_free) == 0
    record = json.loads(capsys.readouterr().out)
    expected = peft_certificate(model, 0.1, 1000)  # the in-memory B-only model, its record on it
    assert record["mode"] == "b_only" and record["trainable_params"] == peft_count(model)
    assert record["certificate"]["seed"] == 7 and record["certificate"]["seed_bits"] == delta_bits(8)
    assert record["certificate"]["code_length_bits"] == pytest.approx(expected.code_length_bits)
    # a lora_A changed after saving is not the seeded draw: refused, one line
    weights = load_file(str(folder / "adapter_model.safetensors"))
    key = next(k for k in weights if ".lora_A." in k)
    weights[key] = weights[key] + 1e-3
    save_file(weights, str(folder / "adapter_model.safetensors"))
    assert main(argv + grid_free) == 2
    assert "not the seeded draw" in capsys.readouterr().err
    # without the record the same file is an ordinary LoRA adapter, A coded like the rest
    (folder / B_ONLY_FILE).unlink()
    assert main(argv + grid_free) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["mode"] == "lora" and plain["certificate"]["seed"] is None
    assert plain["certificate"]["code_length_bits"] > record["certificate"]["code_length_bits"]


@pytest.mark.parametrize("extra, message", [
    (["--train-error", "1.5", "--n", "100"], "train-error"),
    (["--train-error", "-0.1", "--n", "100"], "train-error"),
    (["--train-error", "0.1", "--n", "0"], "--n"),
    (["--train-error", "0.1"], "needs --n"),
    (["--delta", "0.1"], "--delta applies"),
    (["--train-error", "0.1", "--n", "100", "--delta", "1"], "delta"),
    (["--train-error", "0.123", "--n", "100"], "multiple of 1/n"),
    ("no-weights", "holds no adapter_model.safetensors"),
])
def test_cli_peft_certificate_bad_input(tmp_path, capsys, extra, message):
    from infobound.cli import main

    saved_tensors(trained_roberta(), tmp_path / "adapter")
    if extra == "no-weights":
        (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
        extra = ["--train-error", "0.1", "--n", "100"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", **ROBERTA}))
    status = main(["peft", str(tmp_path / "adapter"), "--base-config", str(tmp_path / "config.json")] + extra)
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("infobound: error: ")
    assert message in captured.err, captured.err
