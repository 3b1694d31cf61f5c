"""Presets: PEFT's printed counts, published model sizes, and PEFT's target matching."""

import pytest

from infobound import InputError, PRESETS, get_preset, preset_spec
from infobound.presets import select_layers
from infobound.spec import LayerSpec


def test_peft_printed_counts():
    # PEFT's print_trainable_parameters for these configurations
    assert preset_spec("llama-2-7b", "q_proj,v_proj", rank=8).trainable_params == 4_194_304
    assert preset_spec("llama-2-7b", rank=8).trainable_params == 4_194_304  # PEFT default targets
    vit = preset_spec("vit-base-patch16-224", "query,value", rank=16)
    assert vit.trainable_params == 589_824
    with_head = preset_spec("vit-base-patch16-224", "query,value", rank=16, num_classes=101)
    assert with_head.trainable_params == 589_824 + 77_669
    # roberta-base default (query, value), r=8: 12 layers * 2 * 8 * (768 + 768)
    assert preset_spec("roberta-base", rank=8).trainable_params == 294_912


def _linear_weights(name):
    return sum(l.d_in * l.d_out for l in get_preset(name).layers)


def _linear_biases(name):
    return sum(l.d_out for l in get_preset(name).layers)


# Published parameter counts of the full models; the non-block parts are added by hand here.
def test_llama_sizes_match_published_totals():
    vocab = 32_000
    for name, hidden, n_layers, total in [
        ("llama-2-7b", 4096, 32, 6_738_415_616),
        ("llama-2-13b", 5120, 40, 13_015_864_320),
        ("llama-2-70b", 8192, 80, 68_976_648_192),
    ]:
        embeddings_and_head = 2 * vocab * hidden
        rms_norms = hidden * (2 * n_layers + 1)
        assert _linear_weights(name) + embeddings_and_head + rms_norms == total


def test_llama_70b_grouped_query_attention():
    layers = {l.name.rsplit(".", 1)[-1]: l for l in get_preset("llama-2-70b").layers}
    assert (layers["k_proj"].d_in, layers["k_proj"].d_out) == (8192, 1024)
    assert (layers["v_proj"].d_in, layers["v_proj"].d_out) == (8192, 1024)
    assert (layers["q_proj"].d_in, layers["q_proj"].d_out) == (8192, 8192)


def test_roberta_base_matches_published_total():
    hidden, n_layers = 768, 12
    layer_norms = n_layers * 2 * 2 * hidden + 2 * hidden  # two per block + embeddings' one
    embeddings = 50_265 * hidden + 514 * hidden + 1 * hidden  # word, position, token type
    pooler = hidden * hidden + hidden
    total = _linear_weights("roberta-base") + _linear_biases("roberta-base") + layer_norms + embeddings + pooler
    assert total == 124_645_632


def test_vit_base_matches_published_total():
    hidden = 768
    blocks = _linear_weights("vit-base-patch16-224") + _linear_biases("vit-base-patch16-224")
    layer_norms = 12 * 2 * 2 * hidden + 2 * hidden  # two per block + final
    patch = hidden * 3 * 16 * 16 + hidden
    tokens = hidden + 197 * hidden  # cls + positions
    head = get_preset("vit-base-patch16-224").head_params(1000)
    assert blocks + layer_norms + patch + tokens + head == 86_567_656


def test_bart_large_matches_published_total():
    d = 1024
    blocks = _linear_weights("bart-large") + _linear_biases("bart-large")
    layer_norms = 12 * 2 * 2 * d + 12 * 3 * 2 * d + 2 * 2 * d  # enc, dec, layernorm_embedding x2
    embeddings = 50_265 * d + 2 * 1026 * d  # shared tokens, learned positions (offset 2)
    assert blocks + layer_norms + embeddings == 406_291_456


def test_bart_decoder_cross_attention_included():
    names = [l.name for l in preset_spec("bart-large", "q_proj", rank=1).layers]
    assert len(names) == 36  # 12 encoder self, 12 decoder self, 12 decoder encoder_attn
    assert sum(".encoder_attn." in n for n in names) == 12


def test_every_preset_counts_and_all_linear():
    expected_layers = {
        "roberta-base": 72, "roberta-large": 144, "bart-large": 12 * 6 + 12 * 10,
        "llama-2-7b": 224, "llama-2-13b": 280, "llama-2-70b": 560,
        "vit-base-patch16-224": 72, "vit-large-patch16-224": 144,
    }
    assert set(PRESETS) == set(expected_layers)
    for name, count in expected_layers.items():
        assert len(preset_spec(name, "all-linear", rank=1).layers) == count


def test_peft_suffix_matching():
    layers = [LayerSpec("enc.attn.q", 4, 4), LayerSpec("enc.attnq", 4, 4), LayerSpec("dec.attn.q", 4, 4)]
    assert [l.name for l in select_layers(layers, "q")] == ["enc.attn.q", "dec.attn.q"]
    assert [l.name for l in select_layers(layers, ["enc.attn.q"])] == ["enc.attn.q"]
    assert [l.name for l in select_layers(layers, "enc.attnq")] == ["enc.attnq"]


def test_target_errors():
    with pytest.raises(InputError, match="targets must be given for vit-base-patch16-224"):
        preset_spec("vit-base-patch16-224")
    with pytest.raises(InputError, match="'qproj' matches no module of llama-2-7b; available modules: q_proj"):
        preset_spec("llama-2-7b", "qproj")
    with pytest.raises(InputError, match="preset must be one of"):
        preset_spec("gpt-5")
    with pytest.raises(InputError, match="num_classes"):
        preset_spec("roberta-base", num_classes=0)
