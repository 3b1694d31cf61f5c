"""``infobound peft ADAPTER_DIR --base-config PATH``: the seed bound of a saved PEFT LoRA adapter.

Reads the adapter's ``adapter_config.json`` and the base model's ``config.json``, builds the base
model on the meta device (no weights are read or downloaded), applies the adapter config with PEFT,
and measures the ``AdapterSpec`` with ``infobound.peft_bridge.describe_peft``: the count equals what
PEFT would train (``rank_pattern``, DoRA, biases and ``modules_to_save`` included).
"""

from __future__ import annotations

import json
import os

from .cliargs import fill_defaults, integer_type, number_type, register
from .errors import InputError

AUTO_CLASSES = {
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
}
"""PEFT ``task_type`` -> the transformers class whose head PEFT wraps; any other task: ``AutoModel``."""


def read_adapter_config(path) -> dict:
    """The dict of a PEFT ``adapter_config.json`` (or of the folder holding it)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(path):
        raise InputError(f"adapter config {path!r} does not exist (give a PEFT adapter folder or its "
                         "adapter_config.json)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"adapter config {path!r} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or "peft_type" not in data:
        raise InputError(f"{path!r} is not a PEFT adapter config: it has no \"peft_type\" key")
    if str(data["peft_type"]).upper() != "LORA":
        raise InputError(f"{path!r} is a {data['peft_type']} adapter; only LoRA adapters map to an AdapterSpec")
    return data


def spec_from_adapter_config(adapter_config, base_config, bits: int = 16):
    """``describe_peft`` of a LoRA adapter config applied to a base config, both on the meta device."""
    from .peft_bridge import _require, build_meta_model, describe_peft

    _require("infobound peft")
    import peft

    data = read_adapter_config(adapter_config) if not isinstance(adapter_config, dict) else dict(adapter_config)
    known = set(peft.LoraConfig.__dataclass_fields__)
    options = {k: v for k, v in data.items() if k in known and k not in ("peft_type", "base_model_name_or_path",
                                                                         "revision", "inference_mode")}
    try:
        config = peft.LoraConfig(**options)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the adapter config is not a valid LoraConfig: {' '.join(str(exc).split())}") from None
    task = str(getattr(config.task_type, "value", config.task_type) or "")
    model = build_meta_model(base_config, AUTO_CLASSES.get(task, "AutoModel"))
    try:
        wrapped = peft.get_peft_model(model, config, low_cpu_mem_usage=True)
    except ValueError as exc:  # e.g. a target module the base model does not have
        raise InputError(f"the adapter does not fit the base model: {' '.join(str(exc).split())}") from None
    return describe_peft(wrapped, "default", bits)


def _arguments(parser) -> None:
    parser.add_argument("adapter", metavar="ADAPTER_DIR", help="a PEFT adapter folder or its adapter_config.json")
    parser.add_argument("--base-config", required=True, metavar="PATH",
                        help="the base model's config.json (or its folder)")
    parser.add_argument("--bits", type=integer_type(1, 64), help="bits per trained parameter (default 16)")
    parser.add_argument("--n", type=integer_type(1, None), help="training examples (default 10000)")
    parser.add_argument("--sigma", type=number_type(0.0, open_low=True),
                        help="the loss is sigma-sub-Gaussian (default 0.5: a loss in [0, 1])")
    parser.add_argument("--json", action="store_true", help="one JSON object")


def _run(args) -> int:
    from .bounds import DEFAULT_SIGMA, seed_bound

    fill_defaults(args, {"bits": 16, "n": 10000, "sigma": DEFAULT_SIGMA})
    report = spec_from_adapter_config(args.adapter, args.base_config, args.bits)
    spec = report.spec
    result = seed_bound(spec, args.n, sigma=args.sigma)
    record = result.to_dict()
    record.update(mode=spec.mode.value, rank=spec.rank, bits=spec.bits, n=args.n,
                  trainable_params=spec.trainable_params, info_bits=spec.bits * spec.trainable_params,
                  factors=spec.factor_totals(), extra=dict(spec.extra), layers=len(spec.layers),
                  notes=list(report.notes))
    if args.json:
        print(json.dumps(record, allow_nan=False))
        return 0
    modules = ", ".join(dict.fromkeys(layer.name.rsplit(".", 1)[-1] for layer in spec.layers))
    print(f"PEFT adapter: {len(spec.layers)} LoRA layers [{modules}], mode {spec.mode}, rank {spec.rank}"
          + ("" if all(l.rank is None for l in spec.layers) else " (largest; rank_pattern)"))
    for name, count in spec.extra.items():
        print(f"  {name}: {count:,} trained")
    print(f"trained params {spec.trainable_params:,}; info bits {spec.bits * spec.trainable_params:,}; "
          f"n {args.n:,}; sigma {args.sigma:g}")
    print(f"seed bound {record['bound']:.4g}{' (vacuous)' if record['vacuous'] else ''}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


register("peft", "the seed bound of a saved PEFT LoRA adapter (adapter_config.json + the base config.json)",
         _arguments, _run)
