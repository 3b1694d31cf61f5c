"""The paper's models as data: every linear layer of every transformer block, under its HF module name.

Nothing is downloaded: the dimensions below are those of the public model configs (hidden size,
intermediate size, layers, key/value heads). Target selection follows PEFT's rule for a list of
names: a module matches a target when its name equals the target or ends with ``"." + target``.
``"all-linear"`` selects every listed layer (the presets list only block layers, so no output head is
ever selected). Embeddings, convolutional patch embeddings, poolers and output heads are not listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable

from .errors import InputError
from .validation import check_int, check_names
from .spec import AdapterSpec, LayerSpec, Mode

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class Preset:
    """A model: its adaptable linear layers, PEFT's default targets, and its classifier-head size."""

    name: str
    description: str
    layers: tuple[LayerSpec, ...]
    default_targets: tuple[str, ...] | None
    head_params: Callable[[int], int]
    """Parameters of the task head for ``num_classes`` outputs (trained in every mode when declared)."""
    head: str = ""
    """The head assumed, in words: the transformers class and its layers."""
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Target names of an older transformers layout -> the module names here (ViT's ``query`` is
    ``q_proj`` since transformers 5); a target is matched under its alias."""

    @property
    def module_names(self) -> tuple[str, ...]:
        """The short (last-component) module names, in order of first appearance."""
        return tuple(dict.fromkeys(layer.name.rsplit(".", 1)[-1] for layer in self.layers))

    def select(self, targets: str | Sequence[str] | None = None) -> tuple[LayerSpec, ...]:
        """The layers PEFT would adapt for ``targets`` (``None``: PEFT's default for the model)."""
        if self.aliases and targets is not None and not (isinstance(targets, str) and not targets.strip()):
            names = parse_targets(targets)
            targets = [_aliased(t, self.aliases) for t in names]
        return select_layers(self.layers, targets, default=self.default_targets, model=self.name)


def _aliased(target: str, aliases: Mapping[str, str]) -> str:
    head, _, last = target.rpartition(".")
    if last in aliases:
        return f"{head}.{aliases[last]}" if head else aliases[last]
    return target


def select_layers(
    layers: Sequence[LayerSpec],
    targets: str | Sequence[str] | None,
    default: Sequence[str] | None = None,
    model: str = "the model",
) -> tuple[LayerSpec, ...]:
    """PEFT's matching of a list of target names: exact name or ``.``-separated suffix."""
    available = ", ".join(dict.fromkeys(l.name.rsplit(".", 1)[-1] for l in layers))
    if targets is None or (isinstance(targets, str) and not targets.strip()):
        if default is None:
            raise InputError(
                f"targets must be given for {model} (PEFT has no default for it); "
                f"available modules: {available}, or {ALL_LINEAR}"
            )
        targets = default
    names = parse_targets(targets)
    if names == (ALL_LINEAR,):
        return tuple(layers)
    selected = []
    for target in names:
        if target == ALL_LINEAR:
            raise InputError(f"targets: {ALL_LINEAR} cannot be combined with other module names")
        hits = [l for l in layers if l.name == target or l.name.endswith("." + target)]
        if not hits:
            raise InputError(
                f"targets: {target!r} matches no module of {model}; available modules: "
                f"{available}, or {ALL_LINEAR}"
            )
        selected.extend(hits)
    chosen = {l.name for l in selected}
    return tuple(l for l in layers if l.name in chosen)  # model order, no duplicates


def parse_targets(targets: str | Iterable[str]) -> tuple[str, ...]:
    """Module names from a comma-separated string or a list of strings."""
    try:
        return check_names("targets", targets)
    except InputError as exc:
        raise InputError(f"{exc}; targets name modules (comma-separated), or all-linear") from None


# ------------------------------------------------------------------------------- model builders
def _encoder_blocks(prefix: str, attn: str, n_layers: int, hidden: int, ffn: int) -> list[LayerSpec]:
    """BERT-family blocks (RoBERTa): query/key/value, attention output, intermediate, output."""
    layers = []
    for i in range(n_layers):
        block = f"{prefix}.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            layers.append(LayerSpec(f"{block}.{attn}.{name}", hidden, hidden))
        layers.append(LayerSpec(f"{block}.attention.output.dense", hidden, hidden))
        layers.append(LayerSpec(f"{block}.intermediate.dense", hidden, ffn))
        layers.append(LayerSpec(f"{block}.output.dense", ffn, hidden))
    return layers


def _vit_blocks(n_layers: int, hidden: int, ffn: int) -> list[LayerSpec]:
    """ViT blocks as transformers 5 names them: ``vit.layers.i.attention.{q,k,v,o}_proj``, ``mlp.fc1/fc2``."""
    layers = []
    for i in range(n_layers):
        block = f"vit.layers.{i}"
        layers += [LayerSpec(f"{block}.attention.{p}", hidden, hidden) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        layers += [LayerSpec(f"{block}.mlp.fc1", hidden, ffn), LayerSpec(f"{block}.mlp.fc2", ffn, hidden)]
    return layers


VIT_ALIASES = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}
"""transformers 4's ViT attention names, accepted as targets of the ViT presets."""


def _bart(n_enc: int, n_dec: int, d_model: int, ffn: int) -> list[LayerSpec]:
    def attention(prefix: str) -> list[LayerSpec]:
        return [LayerSpec(f"{prefix}.{p}", d_model, d_model) for p in ("k_proj", "v_proj", "q_proj", "out_proj")]

    def mlp(prefix: str) -> list[LayerSpec]:
        return [LayerSpec(f"{prefix}.fc1", d_model, ffn), LayerSpec(f"{prefix}.fc2", ffn, d_model)]

    layers = []
    for i in range(n_enc):
        block = f"model.encoder.layers.{i}"
        layers += attention(f"{block}.self_attn") + mlp(block)
    for i in range(n_dec):
        block = f"model.decoder.layers.{i}"
        layers += attention(f"{block}.self_attn") + attention(f"{block}.encoder_attn") + mlp(block)
    return layers


def _llama(n_layers: int, hidden: int, ffn: int, n_heads: int, n_kv_heads: int) -> list[LayerSpec]:
    kv = hidden // n_heads * n_kv_heads  # grouped-query attention shrinks k_proj and v_proj
    layers = []
    for i in range(n_layers):
        block = f"model.layers.{i}"
        layers += [
            LayerSpec(f"{block}.self_attn.q_proj", hidden, hidden),
            LayerSpec(f"{block}.self_attn.k_proj", hidden, kv),
            LayerSpec(f"{block}.self_attn.v_proj", hidden, kv),
            LayerSpec(f"{block}.self_attn.o_proj", hidden, hidden),
            LayerSpec(f"{block}.mlp.gate_proj", hidden, ffn),
            LayerSpec(f"{block}.mlp.up_proj", hidden, ffn),
            LayerSpec(f"{block}.mlp.down_proj", ffn, hidden),
        ]
    return layers


def _linear_head(hidden: int, bias: bool = True) -> Callable[[int], int]:
    """``Linear(hidden, classes)``, with or without bias."""
    return lambda classes: hidden * classes + (classes if bias else 0)


def _two_layer_head(hidden: int) -> Callable[[int], int]:
    """dense (hidden -> hidden) + out_proj (hidden -> classes), both with bias (RoBERTa, BART heads)."""
    return lambda classes: hidden * hidden + hidden + hidden * classes + classes


ROBERTA_HEAD = ("RobertaForSequenceClassification's RobertaClassificationHead: dense (d -> d, bias) "
                "then out_proj (d -> C, bias)")
BART_HEAD = ("BartForSequenceClassification's BartClassificationHead: dense (d -> d, bias) then "
             "out_proj (d -> C, bias)")
LLAMA_HEAD = "LlamaForSequenceClassification's score: Linear(d -> C) without bias"
VIT_HEAD = "ViTForImageClassification's classifier: Linear(d -> C) with bias"


def _make(name, description, layers, default, head, head_text, aliases=None) -> Preset:
    return Preset(name, description, tuple(layers), default, head, head_text, dict(aliases or {}))


PRESETS: Mapping[str, Preset] = {
    p.name: p
    for p in (
        _make("roberta-base", "RoBERTa-base: 12 blocks, hidden 768, FFN 3072",
              _encoder_blocks("roberta", "attention.self", 12, 768, 3072), ("query", "value"), _two_layer_head(768), ROBERTA_HEAD),
        _make("roberta-large", "RoBERTa-large: 24 blocks, hidden 1024, FFN 4096",
              _encoder_blocks("roberta", "attention.self", 24, 1024, 4096), ("query", "value"), _two_layer_head(1024), ROBERTA_HEAD),
        _make("bart-large", "BART-large: 12 encoder + 12 decoder blocks, d_model 1024, FFN 4096",
              _bart(12, 12, 1024, 4096), ("q_proj", "v_proj"), _two_layer_head(1024), BART_HEAD),
        _make("llama-2-7b", "LLaMA-2-7B: 32 blocks, hidden 4096, FFN 11008, 32 heads",
              _llama(32, 4096, 11008, 32, 32), ("q_proj", "v_proj"), _linear_head(4096, bias=False), LLAMA_HEAD),
        _make("llama-2-13b", "LLaMA-2-13B: 40 blocks, hidden 5120, FFN 13824, 40 heads",
              _llama(40, 5120, 13824, 40, 40), ("q_proj", "v_proj"), _linear_head(5120, bias=False), LLAMA_HEAD),
        _make("llama-2-70b", "LLaMA-2-70B: 80 blocks, hidden 8192, FFN 28672, 64 heads, 8 KV heads",
              _llama(80, 8192, 28672, 64, 8), ("q_proj", "v_proj"), _linear_head(8192, bias=False), LLAMA_HEAD),
        _make("vit-base-patch16-224", "ViT-base/16 at 224 px: 12 blocks, hidden 768, FFN 3072",
              _vit_blocks(12, 768, 3072), None, _linear_head(768), VIT_HEAD, VIT_ALIASES),
        _make("vit-large-patch16-224", "ViT-large/16 at 224 px: 24 blocks, hidden 1024, FFN 4096",
              _vit_blocks(24, 1024, 4096), None, _linear_head(1024), VIT_HEAD, VIT_ALIASES),
    )
}


def get_preset(name: str) -> Preset:
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise InputError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[key]


def preset_spec(
    name: str,
    targets: str | Sequence[str] | None = None,
    *,
    rank: int = 8,
    mode: Mode | str = Mode.LORA,
    bits: int = 16,
    num_classes: int | None = None,
    extra: Mapping[str, int] | None = None,
) -> AdapterSpec:
    """The ``AdapterSpec`` of a preset model with PEFT's target selection.

    ``num_classes`` declares the model's task head trained (its parameters count in every mode).
    """
    preset = get_preset(name)
    if extra is not None and not isinstance(extra, Mapping):
        raise InputError(f"extra must map names to parameter counts, got {type(extra).__name__}")
    extras = dict(extra or {})
    if num_classes is not None:
        classes = check_int("num_classes", num_classes, 1)
        extras["classifier"] = preset.head_params(classes)
    return AdapterSpec(preset.select(targets), rank=rank, mode=mode, bits=bits, extra=extras)


def custom_spec(
    layers: Iterable,
    *,
    rank: int = 8,
    mode: Mode | str = Mode.LORA,
    bits: int = 16,
    extra: Mapping[str, int] | None = None,
) -> AdapterSpec:
    """An ``AdapterSpec`` for a custom model from ``(name, d_in, d_out[, rank])`` entries."""
    return AdapterSpec(layers, rank=rank, mode=mode, bits=bits, extra={} if extra is None else extra)
