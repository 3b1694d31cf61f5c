"""Hugging Face transformers models from their configs: reading a ``config.json``, building on the
meta device, and the names of a model's linear layers and output head.

Shared by ``infobound.peft_bridge`` (counting a user's adapter), ``infobound.peft_command`` and the
harness's ``local`` task (fine-tuning a user's model). torch and transformers are imported inside the
functions; without the ``hf`` extra each raises one ``MissingExtra`` line naming what to install.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from .errors import InputError
from .extras import MissingExtra, missing
from .validation import describe

HF = {"torch": "torch", "transformers": "transformers", "peft": "peft"}
HF_CONFIG = {"torch": "torch", "transformers": "transformers"}
INSTALL_HF = 'pip install "infobound[hf]" "torch==2.13.0"'


def require_hf(what: str, modules: dict[str, str] = HF) -> None:
    """One ``MissingExtra`` line naming what is missing and the install command of the hf extra."""
    absent = missing(modules)
    if absent:
        raise MissingExtra(f"{what} needs {' and '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} "
                           f"not installed: {INSTALL_HF}")


def base_of(model):
    """The transformers model under a PEFT wrapper (``get_base_model()``), else ``model`` itself."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def read_model_config(config_path_or_dict) -> dict:
    """The dict of a transformers ``config.json`` (a file, its folder, or the dict itself); an
    ``InputError`` names a missing or unreadable file and a JSON that is no model config."""
    if isinstance(config_path_or_dict, Mapping):
        data = dict(config_path_or_dict)
        where = "the config dict"
    elif isinstance(config_path_or_dict, (str, os.PathLike)):
        path = os.fspath(config_path_or_dict)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        where = repr(path)
        if not os.path.isfile(path):
            raise InputError(f"model config {where} does not exist (give a config.json or its folder)")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"model config {where} is not readable JSON: {exc}") from None
    else:
        raise InputError(f"config must be a path to a config.json or a dict, got {describe(config_path_or_dict)}")
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str) or not data["model_type"]:
        raise InputError(f"{where} is not a transformers model config: it has no \"model_type\" key"
                         + (" (is it a PEFT adapter_config.json?)" if isinstance(data, dict)
                            and "peft_type" in data else ""))
    return data


def build_meta_model(config_path_or_dict, auto_class: str = "AutoModel"):
    """The transformers model of a config, on the meta device (shapes only, no memory, no download)."""
    require_hf("spec_from_hf_config", HF_CONFIG)
    import torch
    import transformers

    data = read_model_config(config_path_or_dict)
    if not (isinstance(auto_class, str) and auto_class.startswith("AutoModel")
            and hasattr(transformers, auto_class)):
        raise InputError(f"auto_class must name a transformers AutoModel class (AutoModel, "
                         f"AutoModelForSequenceClassification, AutoModelForCausalLM, ...), got {auto_class!r}")
    model_type = data.pop("model_type")
    for key in ("architectures", "transformers_version", "_name_or_path", "auto_map"):
        data.pop(key, None)
    try:
        config = transformers.AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError) as exc:
        raise InputError(f"model_type {model_type!r} is not known to transformers "
                         f"{transformers.__version__}: {' '.join(str(exc).split())[:200]}") from None
    except TypeError as exc:
        raise InputError(f"the config of model_type {model_type!r} is invalid: {exc}") from None
    try:
        with torch.device("meta"):
            return getattr(transformers, auto_class).from_config(config)
    except ValueError as exc:
        raise InputError(f"{auto_class} cannot build model_type {model_type!r}: "
                         f"{' '.join(str(exc).split())[:300]}") from None


def linear_modules(model) -> list[tuple[str, int, int]]:
    """``(name, d_in, d_out)`` of every ``nn.Linear`` and transformers ``Conv1D`` (GPT-2's linear)."""
    import torch

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - every supported transformers has it
        Conv1D = ()
    out = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            out.append((name, module.in_features, module.out_features))
        elif Conv1D and isinstance(module, Conv1D):
            d_in, d_out = module.weight.shape  # Conv1D stores (nx, nf)
            out.append((name, int(d_in), int(d_out)))
    return out


def head_names(model) -> list[str]:
    """The output head PEFT's ``all-linear`` leaves out: the output embedding (``lm_head``), else a
    classification head (``classifier``, ``score``, ...); here with every layer inside it."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    candidates = [head] if head is not None else [
        getattr(model, n, None) for n in ("classifier", "score", "classification_head")]
    for candidate in candidates:
        if candidate is not None:
            return [n for n, m in model.named_modules() if m is candidate][:1]
    return []
