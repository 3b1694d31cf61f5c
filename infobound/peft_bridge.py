"""From Hugging Face PEFT and transformers to an ``AdapterSpec``: count what a PEFT LoRA adapter trains.

``spec_from_peft(model)`` reads a ``PeftModel`` (or a model with LoRA layers injected by PEFT) and
returns the ``AdapterSpec`` whose ``trainable_params`` equals PEFT's
``model.get_nb_trainable_parameters()[0]``: every LoRA layer with its own ``d_in``, ``d_out`` and rank
(``rank_pattern`` respected), the mode read from which factors have ``requires_grad``, and every other
trained tensor (``modules_to_save`` heads, biases under ``bias="all"``/``"lora_only"``, DoRA's
magnitude vectors, ``lora_bias``) in ``extra``. ``describe_peft`` returns the same spec with the
scaling of every layer (α/r, or α/√r under rsLoRA) and notes, which the spec has no field for.

``make_b_only(model, seed)`` turns a PEFT adapter into the paper's B-only adapter: every ``lora_A`` is
redrawn as a seeded random matrix with orthonormal rows and frozen, so the frozen factor costs only
its seed; ``check_b_only`` refuses a model where a ``lora_A`` trains again or was changed.

``peft_certificate(model, train_error, n)`` is the single-run certificate of a trained adapter: its
trained tensors are quantised on a grid (one of ``infobound.harness.codes.adaptive_grids()``, the
choice paid ``log2 24`` bits, or a grid fixed in advance), coded with
``infobound.codelength.adapter_code_length_from_values`` (a seeded frozen ``lora_A`` of
``make_b_only`` costs only its seed), and the code length enters ``infobound.certificates.certificate``.
``choose_peft_grid`` and ``quantise_adapter`` give the grid and the quantised model to measure.

``spec_from_hf_config(config, targets, rank, mode)`` builds any architecture transformers knows from
its ``config.json`` on the meta device (no weights, no download) and adapts its linear layers with
PEFT's matching rule, so that a bound needs no preset.

torch, transformers and peft are imported inside the functions: without the ``hf`` extra
(``pip install "infobound[hf]"``) the module imports, and each function raises one ``InputError``
naming what to install.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import InputError
from .hf_models import base_of as _base_model
from .hf_models import build_meta_model, head_names, linear_modules, require_hf
from .presets import ALL_LINEAR, parse_targets
from .spec import AdapterSpec, FrozenInit, LayerSpec, Mode
from .validation import check_int, describe

__all__ = [
    "B_ONLY_ATTRIBUTE",
    "PeftCertificate",
    "PeftReport",
    "adapter_values",
    "certificate_from_values",
    "check_b_only",
    "choose_peft_grid",
    "describe_peft",
    "make_b_only",
    "peft_certificate",
    "quantise_adapter",
    "spec_from_hf_config",
    "spec_from_peft",
]

B_ONLY_ATTRIBUTE = "infobound_b_only"
"""Attribute of the (base) model where ``make_b_only`` records, per adapter, the seed of the frozen
draws: ``{adapter_name: {"seed", "init", "layers": {name: layer seed}, "digests": {name: sha256}}}``."""

# LoraConfig options whose factors are not the plain A: (r, d_in), B: (d_out, r) of a LoRA layer, or
# whose trained tensors the modes cannot name.
_UNSUPPORTED_OPTIONS = {
    "use_qalora": "QA-LoRA (lora_A reads group-pooled inputs)",
    "use_bdlora": "block-diagonal LoRA",
    "monteclora_config": "MonteCLoRA (trains a variational posterior over the factors)",
    "kasa_config": "KaSA (trains singular values beside the factors)",
    "arrow_config": "Arrow routing (trains a router over several adapters)",
}


# ------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class PeftReport:
    """What ``describe_peft`` measured: the spec, and what the spec has no field for."""

    spec: AdapterSpec
    adapter_name: str
    scaling: Mapping[str, float]
    """Layer name -> the factor PEFT multiplies ``B A`` by: ``lora_alpha / r``, or ``/ √r`` (rsLoRA)."""
    rslora: bool
    b_only_seed: int | None
    """The seed recorded by ``make_b_only`` when the mode is ``b_only`` and the record still holds."""
    notes: tuple[str, ...] = field(default_factory=tuple)




def _peft_config(model, adapter_name: str):
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, Mapping):
        return configs.get(adapter_name)
    return None


def _lora_layers(model, adapter_name: str) -> list[tuple[str, object]]:
    """``(name, layer)`` of every PEFT LoRA layer of ``model`` carrying ``adapter_name``."""
    from peft.tuners.lora import LoraLayer

    base = _base_model(model)
    all_layers = [(n, m) for n, m in base.named_modules() if isinstance(m, LoraLayer)]
    _check_peft_type(model, adapter_name)
    if not all_layers:
        raise InputError(
            f"the model ({type(model).__name__}) has no PEFT LoRA layer; wrap it with "
            "peft.get_peft_model(model, LoraConfig(...)) first"
        )
    layers = [(n, m) for n, m in all_layers if adapter_name in m.r]
    if not layers:
        names = sorted({a for _, m in all_layers for a in m.r})
        raise InputError(f"adapter_name {adapter_name!r} is not an adapter of the model; its LoRA "
                         f"adapters: {', '.join(map(repr, names))}")
    return layers


def _check_peft_type(model, adapter_name: str) -> None:
    config = _peft_config(model, adapter_name)
    if config is None:
        return
    peft_type = str(getattr(getattr(config, "peft_type", None), "value", getattr(config, "peft_type", "")))
    if peft_type and peft_type.upper() != "LORA":
        raise InputError(
            f"adapter {adapter_name!r} is a {peft_type} adapter; only LoRA (LoraConfig, with DoRA, "
            "rsLoRA, bias and modules_to_save) maps to an AdapterSpec"
            + ("; VeRA trains scaling vectors over shared frozen random factors, which no mode "
               "counts" if peft_type.upper() == "VERA" else "")
        )


def _check_variant(model, adapter_name: str, layers) -> None:
    config = _peft_config(model, adapter_name)
    if config is not None:
        for option, what in _UNSUPPORTED_OPTIONS.items():
            if getattr(config, option, None):
                raise InputError(f"adapter {adapter_name!r} uses {what} ({option}); its trained "
                                 "parameters are not those of the lora, b_only or a_only modes")
    for name, layer in layers:
        module = type(layer).__module__
        if not module.startswith("peft.tuners.lora"):
            raise InputError(f"layer {name!r} is a {type(layer).__name__} from {module}; only LoRA "
                             "layers (peft.tuners.lora) map to an AdapterSpec")


def _factors(layer, adapter_name: str):
    """The A and B weight tensors of one LoRA layer for ``adapter_name``."""
    if adapter_name in layer.lora_A:
        return layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
    return layer.lora_embedding_A[adapter_name], layer.lora_embedding_B[adapter_name]


def _mode_of(a_trains: bool, b_trains: bool) -> Mode | None:
    return {(True, True): Mode.LORA, (False, True): Mode.B_ONLY, (True, False): Mode.A_ONLY}.get(
        (a_trains, b_trains))


def describe_peft(model, adapter_name: str = "default", bits: int = 16) -> PeftReport:
    """The ``AdapterSpec`` of a PEFT LoRA adapter, with each layer's scaling and notes.

    What trains is read from ``requires_grad``, as PEFT's ``get_nb_trainable_parameters`` does:

    * each LoRA layer's rank is its own ``layer.r[adapter_name]`` (``rank_pattern``), its ``d_in`` and
      ``d_out`` those of the factors (``A: (r, d_in)``, ``B: (d_out, r)``; a conv layer's ``d_in`` is
      ``in_channels · kernel size``);
    * the mode: both factors train -> ``lora``, only ``lora_B`` -> ``b_only`` (LoRA-FA, or
      ``make_b_only``), only ``lora_A`` -> ``a_only``. Layers in different modes are refused: the spec
      has one mode;
    * ``extra``: DoRA's magnitude vectors (``dora_magnitude``, ``d_out`` per layer), ``lora_bias``
      (``lora_B``'s bias), trained biases (``bias``: ``bias="all"`` or ``"lora_only"``), each
      ``modules_to_save`` copy (``modules_to_save:<module>``), trainable tokens, and any other tensor
      with ``requires_grad`` (``other``, named in a note).

    Refused with ``InputError``: a model without LoRA layers, an ``adapter_name`` it does not carry,
    a non-LoRA PEFT method (VeRA, AdaLoRA, IA3, ...), LoRA options whose trained tensors the modes
    cannot express (QA-LoRA, block-diagonal LoRA, MonteCLoRA, KaSA, Arrow), layers of the adapter that
    train no factor, and trainable tensors of another adapter.
    """
    require_hf("spec_from_peft")
    from peft.utils import ModulesToSaveWrapper

    adapter_name = str(adapter_name)
    bits = check_int("bits", bits, 1, 64)
    layers = _lora_layers(model, adapter_name)
    _check_variant(model, adapter_name, layers)
    base = _base_model(model)

    factor_ids: set[int] = set()
    by_mode: dict[Mode | None, list[str]] = {}
    specs, scaling, ranks = [], {}, []
    for name, layer in layers:
        a, b = _factors(layer, adapter_name)
        rank = int(layer.r[adapter_name])
        if a.shape[0] != rank or a.numel() % rank or b.numel() % rank:
            raise InputError(f"layer {name!r}: lora_A of shape {tuple(a.shape)} and lora_B of shape "
                             f"{tuple(b.shape)} do not have rank r = {rank}")
        d_in, d_out = a.numel() // rank, b.numel() // rank
        factor_ids.update((id(a), id(b)))
        mode = _mode_of(a.requires_grad, b.requires_grad)
        by_mode.setdefault(mode, []).append(name)
        ranks.append(rank)
        specs.append((name, d_in, d_out, rank))
        scaling[name] = float(layer.scaling[adapter_name])
    if len(by_mode) > 1 or None in by_mode:
        found = "; ".join(f"{'no factor' if m is None else m}: {', '.join(n[:3])}"
                          f"{f' and {len(n) - 3} more' if len(n) > 3 else ''}"
                          for m, n in by_mode.items())
        raise InputError(
            f"the LoRA layers of adapter {adapter_name!r} do not train the same factors ({found}); PEFT's "
            "model.get_model_status() reports requires_grad 'irregular'. An AdapterSpec has one mode: "
            "freeze or unfreeze lora_A / lora_B alike in every layer (or call make_b_only again)"
        )
    mode = next(iter(by_mode))

    wrappers = {n: m for n, m in base.named_modules() if isinstance(m, ModulesToSaveWrapper)}
    layer_prefixes = [n for n, _ in layers]
    extra: dict[str, int] = {}
    others: list[str] = []
    for pname, p in base.named_parameters():
        if not p.requires_grad or id(p) in factor_ids:
            continue
        key = _extra_key(pname, adapter_name, layer_prefixes, wrappers)
        if key == "other":
            others.append(pname)
        extra[key] = extra.get(key, 0) + p.numel()

    uniform = len(set(ranks)) == 1
    spec = AdapterSpec(
        tuple(LayerSpec(n, i, o, None if uniform else r) for n, i, o, r in specs),
        rank=max(ranks), mode=mode, bits=bits, extra=extra,
    )
    config = _peft_config(model, adapter_name)
    rslora = bool(getattr(config, "use_rslora", False))
    notes = []
    values = sorted(set(scaling.values()))
    rule = "lora_alpha/sqrt(r) (rsLoRA)" if rslora else "lora_alpha/r"
    notes.append(f"scaling {rule}: " + ", ".join(f"{v:g}" for v in values[:5]) +
                 (f" and {len(values) - 5} more" if len(values) > 5 else "") + "; the bound does not depend on it")
    if others:
        notes.append(f"{len(others)} other trainable tensor(s) counted in extra['other']: "
                     + ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
    seed = None
    if mode is Mode.B_ONLY:
        record = getattr(base, B_ONLY_ATTRIBUTE, {}).get(adapter_name)
        if record is not None and _record_holds(layers, adapter_name, record):
            seed = record["seed"]
            notes.append(f"lora_A frozen at the orthonormal draw of make_b_only, seed {seed}")
        else:
            notes.append("lora_A is frozen but was not drawn by make_b_only (or changed since): its "
                         "draw has no recorded seed; call make_b_only(model, seed) before training")
    return PeftReport(spec, adapter_name, scaling, rslora, seed, tuple(notes))


def spec_from_peft(model, adapter_name: str = "default", bits: int = 16) -> AdapterSpec:
    """The ``AdapterSpec`` of a PEFT LoRA adapter (see ``describe_peft`` for what is counted).

    Its ``trainable_params`` equals ``model.get_nb_trainable_parameters()[0]`` for an unquantised
    model whose only trainable tensors belong to ``adapter_name``.
    """
    return describe_peft(model, adapter_name, bits).spec


def _extra_key(pname: str, adapter_name: str, layer_prefixes: list[str], wrappers: Mapping) -> str:
    for prefix in layer_prefixes:
        if not pname.startswith(prefix + "."):
            continue
        rest = pname[len(prefix) + 1:]
        if rest.startswith(f"lora_magnitude_vector.{adapter_name}."):
            return "dora_magnitude"
        if rest == f"lora_B.{adapter_name}.bias":
            return "lora_bias"
        if rest.startswith("base_layer.") and rest.endswith("bias"):
            return "bias"
        if rest.startswith("lora_") and f".{adapter_name}." not in f".{rest}":
            raise InputError(f"{pname!r} of another adapter trains too; train one adapter at a time "
                             f"(model.set_adapter({adapter_name!r})) or describe that adapter")
        raise InputError(f"{pname!r} trains inside LoRA layer {prefix!r} but is neither a factor, a DoRA "
                         "magnitude nor a bias; this LoRA variant is not supported")
    for wname in wrappers:
        if pname.startswith(wname + ".modules_to_save."):
            owner = pname[len(wname) + len(".modules_to_save."):].split(".", 1)[0]
            if owner != adapter_name:
                raise InputError(f"{pname!r} (modules_to_save of adapter {owner!r}) trains too; train one "
                                 f"adapter at a time (model.set_adapter({adapter_name!r}))")
            return f"modules_to_save:{wname}"
    if "trainable_tokens_delta" in pname:
        return "trainable_tokens"
    if pname.endswith(".bias") or pname == "bias":
        return "bias"
    return "other"


# ------------------------------------------------------------------------------------ B-only
def _digest(tensor) -> str:
    import torch

    data = tensor.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def _record_holds(layers, adapter_name: str, record: Mapping) -> bool:
    digests = record.get("digests", {})
    for name, layer in layers:
        a, _ = _factors(layer, adapter_name)
        if name not in digests or a.requires_grad or _digest(a) != digests[name]:
            return False
    return True


def make_b_only(model, seed: int, adapter_name: str = "default") -> dict:
    """Redraw every ``lora_A`` of the adapter as a seeded orthonormal matrix and freeze it (B-only).

    Layer i (the adapter's LoRA layers in model order) draws ``infobound.lora.draw_factor("A", d_in,
    d_out, r, "orthonormal", derive_seed(seed, i))``: the first r right-singular vectors of a seeded
    ``Uniform(-0.5, 0.5)`` matrix of W's shape, i.e. ``A: (r, d_in)`` with orthonormal rows, the
    paper's draw. The draw is made before any data is seen, so the frozen factor costs only its seed.
    ``lora_A`` gets ``requires_grad=False``; ``lora_B`` (PEFT starts it at zero, so the model still
    equals the base model) gets ``requires_grad=True``. Nothing else changes.

    Returns (and stores as ``B_ONLY_ATTRIBUTE`` on the base model, so that ``check_b_only`` and
    ``describe_peft`` find it) ``{"seed", "init", "layers": {name: layer seed}, "digests": {...}}``.

    Two PEFT pitfalls undo this silently:

    * ``model.set_adapter(name)`` (and ``enable_adapter_layers``, ``load_adapter`` with
      ``is_trainable=True``) sets ``requires_grad=True`` on *both* factors again. After it, PEFT's
      ``model.get_model_status().requires_grad`` reports ``{name: True}`` instead of
      ``'irregular'`` (its word for an adapter whose tensors do not all train); a B-only adapter
      reads ``'irregular'``. Call ``check_b_only`` right before training.
    * An optimizer built from ``model.parameters()`` updates a frozen tensor as soon as its
      ``requires_grad`` comes back, and weight decay moves it even without gradients. Build it from
      ``[p for p in model.parameters() if p.requires_grad]``, after ``check_b_only``.

    Only linear LoRA layers (``lora_A`` an ``nn.Linear`` of weight ``(r, d_in)``) are redrawn; an
    embedding or convolution LoRA layer is refused.
    """
    require_hf("make_b_only")
    import torch
    from .lora import check_seed, derive_seed, draw_factor

    seed = check_seed("seed", seed)
    adapter_name = str(adapter_name)
    layers = _lora_layers(model, adapter_name)
    _check_variant(model, adapter_name, layers)
    for name, layer in layers:
        if adapter_name not in layer.lora_A or not isinstance(layer.lora_A[adapter_name], torch.nn.Linear):
            raise InputError(f"make_b_only redraws linear LoRA layers only; {name!r} is a "
                             f"{type(layer).__name__} whose lora_A is not an nn.Linear")
    seeds, digests = {}, {}
    with torch.no_grad():
        for index, (name, layer) in enumerate(layers):
            a = layer.lora_A[adapter_name].weight
            b = layer.lora_B[adapter_name].weight
            rank, d_in, d_out = a.shape[0], a.shape[1], b.shape[0]
            if rank > min(d_in, d_out):
                raise InputError(f"layer {name!r}: rank {rank} exceeds min(d_in, d_out) = "
                                 f"{min(d_in, d_out)}; an orthonormal A needs r <= min(d_in, d_out)")
            layer_seed = derive_seed(seed, index)
            drawn = draw_factor("A", d_in, d_out, rank, FrozenInit.ORTHONORMAL, layer_seed)
            if a.device.type == "meta":
                raise InputError(f"layer {name!r} is on the meta device (no weights); load the model first")
            a.copy_(drawn.to(dtype=a.dtype, device=a.device))
            a.requires_grad_(False)
            b.requires_grad_(True)
            seeds[name] = layer_seed
            digests[name] = _digest(a)
    record = {"seed": seed, "init": FrozenInit.ORTHONORMAL.value, "adapter_name": adapter_name,
              "layers": seeds, "digests": digests}
    base = _base_model(model)
    records = dict(getattr(base, B_ONLY_ATTRIBUTE, {}) or {})
    records[adapter_name] = record
    object.__setattr__(base, B_ONLY_ATTRIBUTE, records)  # a plain attribute, not a submodule
    return record


def check_b_only(model, adapter_name: str = "default") -> dict:
    """Confirm the adapter is still the B-only adapter ``make_b_only`` made; return its record.

    Refused with ``InputError`` (saying how to fix it) when ``make_b_only`` was never called, when any
    ``lora_A`` trains again (``model.set_adapter(...)`` re-enables it; PEFT's
    ``get_model_status().requires_grad`` then no longer reads ``'irregular'``), when a ``lora_A``
    differs from its seeded draw, or when a ``lora_B`` does not train. Build the optimizer from
    ``[p for p in model.parameters() if p.requires_grad]`` after this check.
    """
    require_hf("check_b_only")
    adapter_name = str(adapter_name)
    layers = _lora_layers(model, adapter_name)
    record = (getattr(_base_model(model), B_ONLY_ATTRIBUTE, None) or {}).get(adapter_name)
    if record is None:
        raise InputError(f"adapter {adapter_name!r} was not made B-only; call "
                         f"make_b_only(model, seed, adapter_name={adapter_name!r}) first")
    fix = (f"call make_b_only(model, {record['seed']}, adapter_name={adapter_name!r}) again, and build the "
           "optimizer from [p for p in model.parameters() if p.requires_grad] only")
    training = [n for n, layer in layers if _factors(layer, adapter_name)[0].requires_grad]
    if training:
        more = f" and {len(training) - 3} more" if len(training) > 3 else ""
        raise InputError(f"lora_A of adapter {adapter_name!r} trains again in {', '.join(training[:3])}{more} "
                         f"(model.set_adapter(...) re-enables it): {fix}")
    digests = record.get("digests", {})
    changed = [n for n, layer in layers if digests.get(n) != _digest(_factors(layer, adapter_name)[0])]
    if changed:
        raise InputError(f"lora_A of adapter {adapter_name!r} differs from its seeded draw in "
                         f"{', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}: {fix}")
    frozen_b = [n for n, layer in layers if not _factors(layer, adapter_name)[1].requires_grad]
    if frozen_b:
        raise InputError(f"lora_B of adapter {adapter_name!r} does not train in {', '.join(frozen_b[:3])}: {fix}")
    return record


B_ONLY_FILE = "infobound_b_only.json"
"""The file in a saved adapter folder recording the seeds of its frozen ``lora_A`` draws."""
B_ONLY_RULES = {
    "lora_layers": "layer i of the adapter's LoRA layers (model order) draws with derive_seed(seed, i): make_b_only",
    "linear_modules": "the LoRA layer on the i-th nn.Linear of the base model (model order) draws with "
                      "derive_seed(seed, i): infobound's inject_lora, as the harness trains",
}
"""How the layer seeds of a B-only record follow from its one seed; ``read_b_only_file`` checks it."""


def write_b_only_file(folder, seed: int, init: str, rule: str, layers: Mapping[str, int]):
    """Write ``B_ONLY_FILE`` into the adapter ``folder``: the one seed, the draw (``init``), the rule
    (a key of ``B_ONLY_RULES``) and every layer's seed, by the layer's name in the base model."""
    from pathlib import Path

    if rule not in B_ONLY_RULES:
        raise InputError(f"rule must be one of {', '.join(B_ONLY_RULES)}, got {rule!r}")
    path = Path(folder) / B_ONLY_FILE
    data = {"format": 1, "seed": int(seed), "init": str(FrozenInit.parse(init).value), "rule": rule,
            "layers": {str(k): int(v) for k, v in layers.items()}}
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def save_b_only_record(model, folder, adapter_name: str = "default"):
    """Write the ``make_b_only`` record of ``model`` (checked by ``check_b_only``) beside the adapter
    saved in ``folder``, so that ``infobound peft FOLDER`` charges the frozen ``lora_A`` its seed only."""
    record = check_b_only(model, adapter_name)
    return write_b_only_file(folder, record["seed"], record["init"], "lora_layers", record["layers"])


def read_b_only_file(folder) -> dict | None:
    """The B-only record saved in ``folder`` (None when there is none); an ``InputError`` for a file
    that is not one."""
    import os

    path = os.path.join(os.fspath(folder), B_ONLY_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        seed, init, rule, layers = int(data["seed"]), FrozenInit.parse(data["init"]), data["rule"], data["layers"]
        layers = {str(k): int(v) for k, v in dict(layers).items()}
    except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
        raise InputError(f"{path!r} is not a B-only record (seed, init, rule, layers): {exc}") from None
    if rule not in B_ONLY_RULES:
        raise InputError(f"{path!r}: rule must be one of {', '.join(B_ONLY_RULES)}, got {rule!r}")
    return {"seed": seed, "init": init, "rule": rule, "layers": layers, "path": path}


def _linear_order(model) -> dict[str, int]:
    """Name -> position among the base model's ``nn.Linear`` modules before PEFT wrapped them (a PEFT
    LoRA layer stands where its ``base_layer`` was; the factors' own linears are not counted)."""
    import torch

    order = {}
    for name, module in _base_model(model).named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parts = name.split(".")
        if any(p.startswith("lora_") for p in parts):
            continue
        order[name.removesuffix(".base_layer")] = len(order)
    return order


def verify_b_only_record(model, record: Mapping, a_values: Mapping[str, object], adapter_name: str = "default") -> None:
    """Check that every LoRA layer's ``lora_A`` in ``a_values`` (layer name -> array) is the seeded draw
    of ``record`` and that the layer seeds follow from its one seed by its rule; ``InputError`` names
    the first layer where either fails. Only then is the frozen factor a function of the seed alone."""
    import numpy as np

    from .lora import derive_seed, draw_factor

    layers = _lora_layers(model, adapter_name)
    order = _linear_order(model)
    missing_layers = [n for n, _ in layers if n not in record["layers"]]
    if missing_layers:
        raise InputError(f"the B-only record has no seed for layer {missing_layers[0]!r}")
    for i, (name, layer) in enumerate(layers):
        index = i if record["rule"] == "lora_layers" else order.get(name)
        if index is None or record["layers"][name] != derive_seed(record["seed"], index):
            raise InputError(f"layer {name!r}: its seed in the B-only record does not follow from seed "
                             f"{record['seed']} by the rule {record['rule']!r} ({B_ONLY_RULES[record['rule']]})")
        a, b = _factors(layer, adapter_name)
        rank, d_in, d_out = a.shape[0], a.shape[1], b.shape[0]
        drawn = draw_factor("A", d_in, d_out, rank, record["init"], record["layers"][name]).float().numpy()
        saved = np.asarray(a_values[name], dtype=np.float64)
        if saved.shape != drawn.shape or np.max(np.abs(saved - drawn)) > 0:
            raise InputError(f"layer {name!r}: the saved lora_A is not the seeded draw of the B-only record "
                             f"(seed {record['layers'][name]}); it cannot be charged its seed only")


# ------------------------------------------------------------------------------ certificate
def _seed_code_bits(seed: int) -> int:
    """Length of the Elias-delta code of ``seed + 1``: a prefix-free code of every seed >= 0, so the
    seed is paid for whichever one was used."""
    m = int(seed) + 1
    width = m.bit_length()
    return width - 1 + 2 * (width.bit_length() - 1) + 1


def _coded_parameters(model, adapter_name: str):
    """``(params, record)``: name -> tensor of what the adapter's code must hold, in model order, and
    the ``make_b_only`` record when its seeded ``lora_A`` is charged its seed only (else ``None``).

    Coded: every tensor ``describe_peft`` counts (trained factors, DoRA magnitudes, biases,
    ``modules_to_save``, ...) and every frozen factor of the adapter's LoRA layers, except the
    ``lora_A`` of a ``make_b_only`` adapter that ``check_b_only`` accepts."""
    describe_peft(model, adapter_name)  # validates: one mode, one adapter, LoRA only
    base = _base_model(model)
    layers = _lora_layers(model, adapter_name)
    record = (getattr(base, B_ONLY_ATTRIBUTE, None) or {}).get(adapter_name)
    if record is not None:
        record = check_b_only(model, adapter_name)  # refuses an A that trains again or changed
    seeded = {id(_factors(layer, adapter_name)[0]) for _, layer in layers} if record is not None else set()
    factor_ids = {id(t) for _, layer in layers for t in _factors(layer, adapter_name)}
    params = {}
    for name, p in base.named_parameters():
        if id(p) in seeded:
            continue
        if p.requires_grad or id(p) in factor_ids:
            if p.device.type == "meta":
                raise InputError(f"{name!r} is on the meta device (no values); load the adapter's weights first")
            params[name] = p
    return params, record


def adapter_values(model, adapter_name: str = "default") -> dict:
    """The values (float64 numpy arrays, model order) of the tensors ``peft_certificate`` codes."""
    require_hf("adapter_values")
    params, _ = _coded_parameters(model, str(adapter_name))
    return {name: _to_numpy(p) for name, p in params.items()}


def _to_numpy(tensor):
    import torch

    return tensor.detach().to("cpu", torch.float64).numpy()


def _max_errors(values: Mapping, grid) -> dict[str, float]:
    import numpy as np

    out = {}
    for name, x in values.items():
        out[name] = float(np.max(np.abs(grid.values(grid.indices(x)) - x)))
    return out


def _choose(values: Mapping, tolerance):
    """The grid of ``adaptive_grids()`` with the shortest code whose largest quantisation error is at
    most ``tolerance``; ``None``: the grid with the smallest largest error (ties: shortest code)."""
    from .codelength import adapter_code_length_from_values
    from .harness.codes import adaptive_grids

    scored = []
    for index, grid in enumerate(adaptive_grids()):
        error = max(_max_errors(values, grid).values())
        bits = adapter_code_length_from_values(values, grid).total_bits
        scored.append((error, bits, index, grid))
    if tolerance is None:
        return min(scored, key=lambda s: (s[0], s[1], s[2]))[3]
    feasible = [s for s in scored if s[0] <= tolerance]
    if not feasible:
        raise InputError(f"tolerance {tolerance:g} is met by no adaptive grid; the smallest largest "
                         f"quantisation error among them is {min(s[0] for s in scored):.4g}")
    return min(feasible, key=lambda s: (s[1], s[0], s[2]))[3]


def _check_tolerance(tolerance):
    import math

    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise InputError(f"tolerance must be None or a finite number >= 0, got {describe(tolerance)}")
    return float(tolerance)


def choose_peft_grid(model, *, adapter_name: str = "default", tolerance=None):
    """The ``Grid`` that ``peft_certificate(model, ..., grid=None)`` quantises on (see its rule there)."""
    require_hf("choose_peft_grid")
    return _choose(adapter_values(model, adapter_name), _check_tolerance(tolerance))


def quantise_adapter(model, grid, *, adapter_name: str = "default") -> float:
    """Round, in place, every tensor ``peft_certificate`` codes onto ``grid``; return the largest error.

    The tensors become the decoded values of the code (grid points cast to each tensor's dtype); a
    seeded ``lora_A`` of ``make_b_only`` is not coded and stays as drawn. Measure the training error
    of the model after this call: that is the error ``peft_certificate`` needs.
    """
    require_hf("quantise_adapter")
    import torch
    from .codelength import as_grid

    grid = as_grid("grid", grid)
    params, _ = _coded_parameters(model, str(adapter_name))
    worst = 0.0
    with torch.no_grad():
        for p in params.values():
            x = _to_numpy(p)
            q = grid.values(grid.indices(x))
            worst = max(worst, float(abs(q - x).max()))
            p.copy_(torch.from_numpy(q).to(dtype=p.dtype, device=p.device))
    return worst


@dataclass(frozen=True)
class PeftCertificate:
    """What ``peft_certificate`` computed: the itemised code, the grid and the certificate."""

    code_length_bits: float
    """``|c(h)|``: the code of the quantised adapter, union-bound charges included."""
    items: Mapping[str, float]
    """The code's items (``CodeLength.items``): per tensor its shape, table, length, payload; ``grid``,
    ``seed``, ``prefix``. They sum to ``code_length_bits``."""
    grid: object
    """The ``Grid`` the coded tensors are quantised on."""
    grid_candidates: int
    """How many grids the grid was chosen from (paid ``log2`` of it; 1: fixed in advance)."""
    max_quantisation_error: float
    """Largest ``|q(x) - x|`` over the coded tensors, on ``grid``: 0 (up to the tensors' dtype) when
    the adapter was quantised (``quantise_adapter``) before its training error was measured."""
    quantisation_errors: Mapping[str, float]
    seed: int | None
    """The ``make_b_only`` seed whose draw ``lora_A`` is (then not coded), else ``None``."""
    seed_bits: int
    train_error: float
    n: int
    delta: float
    occam_kl: float
    binomial: float
    best: float
    best_method: str
    certificate: object
    """The ``infobound.certificates.Certificate`` at ``ceil(code_length_bits)`` bits."""
    code: object = field(repr=False, default=None)
    """The ``CodeLength`` itself (per-tensor models, entropies, the stream)."""
    note: str = ""

    def to_dict(self) -> dict:
        """Plain Python values, ready for JSON."""
        return {"code_length_bits": self.code_length_bits, "items": dict(self.items),
                "grid": self.grid.to_dict(), "grid_candidates": self.grid_candidates,
                "max_quantisation_error": self.max_quantisation_error,
                "quantisation_errors": dict(self.quantisation_errors), "seed": self.seed,
                "seed_bits": self.seed_bits, "train_error": self.train_error, "n": self.n,
                "delta": self.delta, "occam_kl": self.occam_kl, "binomial": self.binomial,
                "best": self.best, "best_method": self.best_method, "note": self.note}


def certificate_from_values(values: Mapping, train_error: float, n: int, *, delta: float = 0.05, grid=None,
                            grid_candidates: int = 1, tolerance=None, seed: int | None = None) -> PeftCertificate:
    """``peft_certificate`` on the coded tensors given as arrays (name -> float array, a fixed order).

    ``seed``: the ``make_b_only`` seed of a frozen ``lora_A`` left out of ``values`` (charged the
    Elias-delta length of ``seed + 1``); ``None``: nothing frozen is left out.
    """
    import math

    from .certificates import certificate
    from .codelength import as_grid, adapter_code_length_from_values
    from .harness.codes import adaptive_grids
    from .validation import check_real

    train_error = check_real("train_error", train_error, 0.0, 1.0)
    n = check_int("n", n, 1)
    delta = check_real("delta", delta, 0.0, 1.0, open_low=True, open_high=True)
    tolerance = _check_tolerance(tolerance)
    if not isinstance(values, Mapping) or not values:
        raise InputError("the adapter has no tensor to code")
    seed_bits = 0 if seed is None else _seed_code_bits(seed)
    if grid is None:
        if grid_candidates != 1:
            raise InputError("grid_candidates applies only with a given grid (the adaptive grids are "
                             "counted themselves)")
        grid, grid_candidates = _choose(values, tolerance), len(adaptive_grids())
    else:
        if tolerance is not None:
            raise InputError("tolerance applies only when the grid is chosen (grid=None)")
        grid = as_grid("grid", grid)
        grid_candidates = check_int("grid_candidates", grid_candidates, 1)
    code = adapter_code_length_from_values(values, grid, seed_bits=seed_bits, grid_candidates=grid_candidates)
    bits = math.ceil(code.total_bits - 1e-9)
    cert = certificate(train_error, n, bits, delta)
    errors = _max_errors(values, grid)
    worst = max(errors.values())
    note = (f"high-probability bound at delta = {delta:g}: with probability >= {1 - delta:g} over the n = {n} "
            f"training examples, the population 0-1 error of the QUANTISED adapter (its {len(values)} coded "
            f"tensors on grid bits={grid.bits}, clip={grid.clip:g}) is at most 'best'; rigorous only if "
            f"train_error is that quantised model's training error (largest quantisation error here "
            f"{worst:.3g}; 0 once quantise_adapter was applied) and the base model never saw the data")
    if seed is not None:
        note += f"; lora_A is a seeded draw (seed {seed}, {seed_bits} bits, checked against the draw), not coded"
    return PeftCertificate(
        code_length_bits=float(code.total_bits), items=dict(code.items), grid=grid, grid_candidates=grid_candidates,
        max_quantisation_error=worst, quantisation_errors=errors, seed=seed, seed_bits=seed_bits,
        train_error=train_error, n=n, delta=delta, occam_kl=float(cert.occam_kl), binomial=float(cert.binomial),
        best=float(cert.best), best_method=cert.best_method, certificate=cert, code=code, note=note)


def peft_certificate(model, train_error: float, n: int, *, adapter_name: str = "default", delta: float = 0.05,
                     grid=None, grid_candidates: int = 1, tolerance=None) -> PeftCertificate:
    """The certificate of a trained PEFT LoRA adapter on its 0-1 training error over n examples.

    Coded (in model order): every tensor the adapter trains, as ``describe_peft`` counts them
    (``lora_A``/``lora_B``, DoRA magnitudes, trained biases, ``modules_to_save`` copies, ...), and any
    frozen factor of its LoRA layers, on one grid. A ``lora_A`` that ``make_b_only`` drew and froze is
    not coded: it is a fixed function of the seed, which is charged instead (Elias-delta of
    ``seed + 1`` bits); ``check_b_only`` refuses the model if that ``lora_A`` trains again or changed.
    A frozen ``lora_A`` without a ``make_b_only`` record is coded like the rest.

    The grid: ``grid=None`` chooses among the 24 grids of ``infobound.harness.codes.adaptive_grids()``
    (paid ``log2 24`` bits) the shortest code whose largest quantisation error is within ``tolerance``,
    or, with ``tolerance=None``, the grid with the smallest largest error. A given ``grid`` (``Grid``,
    ``(bits, clip)``) is paid ``log2(grid_candidates)``: 1 if it was fixed before training; pass
    ``grid_candidates=24`` for a grid taken from ``choose_peft_grid``.

    The code length ``|c|`` (rounded up to whole bits) gives ``infobound.certificates.certificate
    (train_error, n, |c|, delta)``: Occam-kl and binomial tail at ``delta`` and the best of both at
    ``delta / 2``. It is a high-probability bound, with probability at least ``1 - delta`` over the n
    training examples, on the population 0-1 error of the QUANTISED model (coded tensors replaced by
    their grid points). It is rigorous only when ``train_error`` is the training error of that
    quantised model, a multiple of 1/n: quantise with ``quantise_adapter(model, grid)``, measure, and
    call this with that ``grid``. ``max_quantisation_error`` (largest ``|q(x) - x|``) lets you check
    that the tensors given are already on the grid. The base model is part of the prior: it must not
    have been trained on these examples.
    """
    require_hf("peft_certificate")
    adapter_name = str(adapter_name)
    params, record = _coded_parameters(model, adapter_name)
    values = {name: _to_numpy(p) for name, p in params.items()}
    return certificate_from_values(values, train_error, n, delta=delta, grid=grid, grid_candidates=grid_candidates,
                                   tolerance=tolerance, seed=None if record is None else int(record["seed"]))


# ------------------------------------------------------------------------------ config -> spec
def spec_from_hf_config(
    config_path_or_dict,
    targets: str | Sequence[str],
    rank: int = 8,
    mode: Mode | str = Mode.LORA,
    bits: int = 16,
    *,
    extra: Mapping[str, int] | None = None,
    auto_class: str = "AutoModel",
) -> AdapterSpec:
    """The ``AdapterSpec`` of LoRA on ``targets`` of any model transformers can build from its config.

    ``config_path_or_dict``: a ``config.json``, its folder, or the dict. The model is built with
    ``auto_class`` (default ``AutoModel``: no task head; ``AutoModelForSequenceClassification`` gives
    the names PEFT sees under ``task_type="SEQ_CLS"``) on the meta device, so a 70B config takes
    seconds and no memory. Its ``nn.Linear`` (and GPT-2 ``Conv1D``) modules are matched with PEFT's
    rule: a module matches a target when its name equals it or ends with ``"." + target``;
    ``all-linear`` takes every one of them except the output head (``lm_head``, or a classification
    head such as ``classifier`` or ``score`` with the layers inside it), as PEFT's shorthand does. ``extra`` adds fully trained parameters (a head).
    """
    names = parse_targets(targets)
    model = build_meta_model(config_path_or_dict, auto_class)
    linears = linear_modules(model)
    if not linears:
        raise InputError(f"the {type(model).__name__} built from the config has no linear layer to adapt")
    if names == (ALL_LINEAR,):
        heads = head_names(model)
        chosen = {n for n, _, _ in linears if not any(n == h or n.startswith(h + ".") for h in heads)}
    else:
        available = ", ".join(dict.fromkeys(n.rsplit(".", 1)[-1] for n, _, _ in linears))
        chosen = set()
        for target in names:
            if target == ALL_LINEAR:
                raise InputError(f"targets: {ALL_LINEAR} cannot be combined with other module names")
            hits = {n for n, _, _ in linears if n == target or n.endswith("." + target)}
            if not hits:
                raise InputError(f"targets: {target!r} matches no linear module of {type(model).__name__}; "
                                 f"available: {available}, or {ALL_LINEAR}")
            chosen |= hits
    layers = tuple(LayerSpec(n, i, o) for n, i, o in linears if n in chosen)
    return AdapterSpec(layers, rank=rank, mode=mode, bits=bits, extra=dict(extra or {}))
