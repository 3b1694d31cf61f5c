"""``infobound peft ADAPTER_DIR --base-config PATH``: the seed bound of a saved PEFT LoRA adapter.

With ``--train-error E --n N`` also its certificate (``infobound.peft_bridge.certificate_from_values``):
the adapter's tensors are read from ``adapter_model.safetensors`` (or ``adapter_model.bin``) in
ADAPTER_DIR, matched by name to what the adapter trains on the meta-device model, quantised on the
chosen adaptive grid and coded; the base model's weights are not needed.

Reads the adapter's ``adapter_config.json`` and the base model's ``config.json``, builds the base
model on the meta device (no weights are read or downloaded), applies the adapter config with PEFT,
and measures the ``AdapterSpec`` with ``infobound.peft_bridge.describe_peft``: the count equals what
PEFT would train (``rank_pattern``, DoRA, biases and ``modules_to_save`` included).
"""

from __future__ import annotations

import copy
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
    from .peft_bridge import describe_peft

    return describe_peft(wrapped_from_adapter_config(adapter_config, base_config), "default", bits)


def wrapped_from_adapter_config(adapter_config, base_config):
    """The PEFT model of a LoRA adapter config applied to a base config, on the meta device."""
    from .hf_models import build_meta_model, read_model_config, require_hf

    require_hf("infobound peft")
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
    classes = [AUTO_CLASSES.get(task, "AutoModel")]
    if not task:  # no task type: the layer names decide whether the base had a head, and which
        architectures = read_model_config(base_config).get("architectures") or []
        classes += ["AutoModel" + a[a.index("For"):] for a in architectures if isinstance(a, str) and "For" in a]
    for i, auto_class in enumerate(dict.fromkeys(classes)):
        model = build_meta_model(base_config, auto_class)
        try:
            return peft.get_peft_model(model, copy.deepcopy(config), low_cpu_mem_usage=True)
        except ValueError as exc:  # e.g. a target module the base model does not have
            if i == len(dict.fromkeys(classes)) - 1:
                raise InputError(f"the adapter does not fit the base model: {' '.join(str(exc).split())}") from None


WEIGHTS_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def read_adapter_weights(folder) -> dict:
    """The saved tensors of a PEFT adapter folder (``adapter_model.safetensors``, else ``.bin``)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        folder = os.path.dirname(folder) or "."
    for name in WEIGHTS_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            break
    else:
        raise InputError(f"adapter folder {folder!r} holds no {' or '.join(WEIGHTS_FILES)}: the certificate "
                         "codes the trained tensors (save them with model.save_pretrained(folder))")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return dict(load_file(path))
        import torch

        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: one line, whatever the loader raised
        raise InputError(f"adapter weights {path!r} are not readable: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(data, dict):
        raise InputError(f"adapter weights {path!r} do not hold a dict of tensors")
    return data


def saved_key(name: str, adapter_name: str = "default") -> str:
    """The key PEFT's ``save_pretrained`` writes for the base-model parameter ``name`` of the adapter."""
    parts = [p for p in name.split(".") if p != adapter_name]
    key = ".".join(parts).replace(".modules_to_save.", ".")
    if key.endswith("lora_magnitude_vector.weight"):
        key = key[: -len(".weight")]
    return "base_model.model." + key


def saved_values(wrapped, weights: dict, ignore: frozenset = frozenset()) -> dict:
    """name -> float64 array of every tensor the adapter trains, in model order, from ``weights``;
    keys in ``ignore`` (a seeded frozen ``lora_A``) may be present and are not read."""
    from .hf_models import base_of

    out, used = {}, set()
    for name, p in base_of(wrapped).named_parameters():
        if not p.requires_grad:
            continue
        key = saved_key(name)
        if key not in weights:
            raise InputError(f"the adapter weights have no tensor {key!r} (for {name!r}); were they saved "
                             "from this adapter config?")
        tensor = weights[key]
        if tuple(tensor.shape) != tuple(p.shape):
            raise InputError(f"the adapter weights' {key!r} has shape {tuple(tensor.shape)}, the adapter "
                             f"trains {tuple(p.shape)}")
        out[name] = tensor.detach().to("cpu").double().numpy()
        used.add(key)
    unknown = sorted(set(weights) - used - set(ignore))
    if unknown:
        raise InputError(f"the adapter weights hold {len(unknown)} tensor(s) the adapter config does not "
                         f"train: {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    return out


def b_only_from_record(wrapped, adapter) -> dict | None:
    """When the adapter folder holds a B-only record (``peft_bridge.B_ONLY_FILE``): check that every
    saved ``lora_A`` is its seeded draw (``verify_b_only_record``), freeze those factors in ``wrapped``
    (so the spec is B-only) and return ``{"seed", "keys"}`` (the saved keys of the seeded factors);
    None when there is no record."""
    from .hf_models import base_of
    from .peft_bridge import read_b_only_file, verify_b_only_record

    folder = adapter if os.path.isdir(os.fspath(adapter)) else (os.path.dirname(os.fspath(adapter)) or ".")
    record = read_b_only_file(folder)
    if record is None:
        return None
    weights = read_adapter_weights(folder)
    params = dict(base_of(wrapped).named_parameters())
    a_values, keys = {}, set()
    for name in record["layers"]:
        key = saved_key(f"{name}.lora_A.default.weight")
        if key not in weights or f"{name}.lora_A.default.weight" not in params:
            raise InputError(f"the B-only record names layer {name!r}, which the adapter has no lora_A for")
        a_values[name] = weights[key].detach().to("cpu").double().numpy()
        keys.add(key)
    verify_b_only_record(wrapped, record, a_values)
    for name in record["layers"]:
        params[f"{name}.lora_A.default.weight"].requires_grad_(False)
    return {"seed": record["seed"], "keys": frozenset(keys)}


def _arguments(parser) -> None:
    parser.add_argument("adapter", metavar="ADAPTER_DIR", help="a PEFT adapter folder or its adapter_config.json")
    parser.add_argument("--base-config", required=True, metavar="PATH",
                        help="the base model's config.json (or its folder)")
    parser.add_argument("--bits", type=integer_type(1, 64), help="bits per trained parameter (default 16)")
    parser.add_argument("--n", type=integer_type(1, None), help="training examples (default 10000)")
    parser.add_argument("--sigma", type=number_type(0.0, open_low=True),
                        help="the loss is sigma-sub-Gaussian (default 0.5: a loss in [0, 1])")
    parser.add_argument("--train-error", type=number_type(0.0, 1.0), metavar="E",
                        help="0-1 training error of the quantised adapter: adds its certificate "
                             "(needs --n and the adapter's weights file)")
    parser.add_argument("--delta", type=number_type(0.0, 1.0, open_low=True, open_high=True),
                        help="the certificate holds with probability >= 1 - delta (default 0.05)")
    parser.add_argument("--json", action="store_true", help="one JSON object")


def _run(args) -> int:
    from .bounds import DEFAULT_SIGMA, seed_bound

    from .peft_bridge import certificate_from_values, describe_peft

    if args.train_error is not None and args.n is None:
        raise InputError("--train-error needs --n, the number of examples it was measured on")
    if args.train_error is None and args.delta is not None:
        raise InputError("--delta applies to the certificate: give --train-error and --n too")
    fill_defaults(args, {"bits": 16, "n": 10000, "sigma": DEFAULT_SIGMA, "delta": 0.05})
    wrapped = wrapped_from_adapter_config(args.adapter, args.base_config)
    seeded = b_only_from_record(wrapped, args.adapter)
    report = describe_peft(wrapped, "default", args.bits)
    cert = None
    if args.train_error is not None:
        values = saved_values(wrapped, read_adapter_weights(args.adapter),
                              ignore=frozenset() if seeded is None else seeded["keys"])
        cert = certificate_from_values(values, args.train_error, args.n, delta=args.delta,
                                       seed=None if seeded is None else seeded["seed"])
    spec = report.spec
    result = seed_bound(spec, args.n, sigma=args.sigma)
    record = result.to_dict()
    record.update(mode=spec.mode.value, rank=spec.rank, bits=spec.bits, n=args.n,
                  trainable_params=spec.trainable_params, info_bits=spec.bits * spec.trainable_params,
                  factors=spec.factor_totals(), extra=dict(spec.extra), layers=len(spec.layers),
                  notes=list(report.notes))
    if cert is not None:
        record["certificate"] = cert.to_dict()
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
    if cert is not None:
        print(f"certificate (delta {cert.delta:g}, train error {cert.train_error:g}, n {cert.n:,}): "
              f"best {cert.best:.4g} ({cert.best_method}); occam-kl {cert.occam_kl:.4g}; "
              f"binomial {cert.binomial:.4g}")
        print(f"code length {cert.code_length_bits:.1f} bits on grid bits={cert.grid.bits} clip={cert.grid.clip:g} "
              f"(chosen among {cert.grid_candidates}); largest quantisation error {cert.max_quantisation_error:.3g}")
        print(f"note: {cert.note}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


register("peft", "the seed bound of a saved PEFT LoRA adapter (adapter_config.json + the base config.json)",
         _arguments, _run)
