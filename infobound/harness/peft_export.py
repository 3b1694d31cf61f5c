"""A harness run as a PEFT adapter: one replica of a model adapted by ``inject_lora``, written with
PEFT's own ``save_pretrained``, so that ``PeftModel.from_pretrained(base, folder)`` reproduces it and
``infobound peft FOLDER`` counts and certifies it.

infobound's ``LoRALinear`` computes ``W0 x + b + (α/r) B A x`` with ``A: (r, d_in)``, ``B: (d_out, r)``,
exactly PEFT's LoRA layer (without rsLoRA, DoRA or dropout), so the export copies the factors and
sets ``r`` and ``lora_alpha``; a ``full``-mode delta is no LoRA adapter and is refused.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from torch import nn

from ..errors import InputError
from ..hf_models import require_hf
from ..lora import lora_layers
from ..spec import Mode
from ..validation import check_int

BASE_CONFIG = "base_model_config.json"
"""The file in an exported adapter folder holding the base network's transformers config."""


def _prefix(model: nn.Module) -> str:
    """``"model."`` for the ``local`` task's ``HFClassifier`` (the transformers model is its ``.model``,
    where PEFT's layer names start), else ``""``."""
    from .tasks.local import HFClassifier

    return "model." if isinstance(model, HFClassifier) else ""


def _unadapted(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``LoRALinear`` replaced by (a copy of) its frozen base layer."""
    plain = copy.deepcopy(model)
    for name, layer in lora_layers(plain):
        parent_name, _, child = name.rpartition(".")
        parent = plain.get_submodule(parent_name) if parent_name else plain
        setattr(parent, child, layer.base)
    return plain


def peft_model_of(model: nn.Module, replica: int = 0):
    """The PEFT ``PeftModel`` equal to replica ``replica`` of ``model`` (stacked or not): the base
    network (the ``HFClassifier``'s transformers model, or ``model`` itself) with PEFT LoRA layers on
    the adapted layers, holding that replica's factors."""
    require_hf("peft_model_of")
    import peft
    import torch

    layers = lora_layers(model)
    if not layers:
        raise InputError("model has no LoRALinear layer to export; adapt it with inject_lora first")
    modes = {layer.mode for _, layer in layers}
    if Mode.FULL in modes:
        raise InputError("a full-mode update (a dense delta per layer) is no LoRA adapter; export lora, b_only or a_only runs")
    stack = {layer.stack for _, layer in layers}.pop()
    limit = (stack or 1) - 1
    replica = check_int(f"replica (the model holds {limit + 1} replica(s))", replica, 0, limit)
    plain = _unadapted(model)
    prefix = _prefix(plain)
    inner = plain.model if prefix else plain
    names = [name.removeprefix(prefix) for name, _ in layers]
    ranks = {name: layer.rank for name, (_, layer) in zip(names, layers)}
    alphas = {name: layer.alpha for name, (_, layer) in zip(names, layers)}
    rank, alpha = next(iter(ranks.values())), next(iter(alphas.values()))
    config = peft.LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=names, lora_dropout=0.0, bias="none",
        rank_pattern={n: r for n, r in ranks.items() if r != rank},
        alpha_pattern={n: a for n, a in alphas.items() if a != alpha},
    )
    wrapped = peft.get_peft_model(inner, config)
    modules = dict(wrapped.base_model.model.named_modules())
    with torch.no_grad():
        for name, (_, layer) in zip(names, layers):
            target = modules[name]
            a = layer.lora_A if stack is None else layer.lora_A[replica]
            b = layer.lora_B if stack is None else layer.lora_B[replica]
            target.lora_A["default"].weight.copy_(a)
            target.lora_B["default"].weight.copy_(b)
            target.lora_A["default"].weight.requires_grad_(layer.lora_A.requires_grad)
            target.lora_B["default"].weight.requires_grad_(layer.lora_B.requires_grad)
    return wrapped


def _write_b_only(model: nn.Module, folder: Path, replica: int) -> None:
    """For a b_only model, the record that lets ``infobound peft`` charge the frozen A its seed only:
    the replica's one frozen seed and every layer's derived seed (rule ``linear_modules``)."""
    from ..lora import derive_seed
    from ..peft_bridge import write_b_only_file

    layers = lora_layers(model)
    if any(layer.mode is not Mode.B_ONLY or layer.origin is None for _, layer in layers):
        return
    masters = {layer.origin[1][replica] for _, layer in layers}
    if len(masters) != 1:
        return  # layers drawn from different seeds: nothing one seed pays for
    master = masters.pop()
    prefix = _prefix(model)
    seeds = {}
    for name, layer in layers:
        seed = layer.seed if layer.stack is None else layer.seeds[replica]
        if seed != derive_seed(master, layer.origin[0]):
            return
        seeds[name.removeprefix(prefix)] = seed
    write_b_only_file(folder, master, layers[0][1].init.value, "linear_modules", seeds)


def export_peft_adapter(model: nn.Module, folder: str | os.PathLike, replica: int = 0) -> Path:
    """Write replica ``replica`` of ``model`` as a PEFT adapter folder (``adapter_config.json`` and
    ``adapter_model.safetensors``) and the base network's config (``base_model_config.json``: its
    classes and head class, dropout as trained); for a b_only replica also the seed record
    (``peft_bridge.B_ONLY_FILE``), so that its frozen A costs only its seed; returns the folder. Load it with
    ``PeftModel.from_pretrained(base_model, folder)`` on the same base weights; count and certify it
    with ``infobound peft FOLDER --base-config FOLDER/base_model_config.json``."""
    wrapped = peft_model_of(model, replica)
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        wrapped.save_pretrained(str(folder))
        base_config = copy.deepcopy(wrapped.base_model.model.config)
        base_config.architectures = [type(wrapped.base_model.model).__name__]  # its head class, for the CLI
        base_config.to_json_file(str(folder / BASE_CONFIG))
        _write_b_only(model, folder, replica)
    except OSError as exc:
        raise InputError(f"folder {str(folder)!r} cannot be written: {exc}") from None
    return folder


__all__ = ["export_peft_adapter", "peft_model_of"]
