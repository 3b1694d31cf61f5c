"""``local``: fine-tune a user's transformers model on the user's own labelled data, from local files.

The task is named ``local:TASK_FILE``, a JSON file such as::

    {"model": "my-model",          # a folder with config.json (+ weights, tokenizer), or a config.json
     "data": "reviews.csv",        # a CSV, or a folder with one subfolder of files per class
     "text_column": "text", "label_column": "label",   # CSV columns (these are the defaults)
     "max_length": 32,             # tokens per text (padded and truncated)
     "test_fraction": 0.25,        # held out, stratified by class
     "seed": 0,                    # the split (and the head's initialisation when it is new)
     "targets": ["query", "value", "classifier"]}      # optional: the default adapted layers

Relative paths are relative to the task file. Data: a CSV with a text column (texts, tokenized with
the model folder's tokenizer) or an ``image`` column (image paths relative to the CSV), and a label
column; or a folder whose subfolders are the classes, holding ``.txt`` files (one text each) or images
(``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``). Labels are sorted (numerically when every label
is an integer) and numbered from 0.

The network is ``AutoModelForSequenceClassification`` (texts) or ``AutoModelForImageClassification``
(images) of the model folder, with its weights when the folder has them (``model.safetensors`` or
``pytorch_model.bin``; a head for the task's classes is initialised from ``seed`` when the weights
have none) and random weights from ``seed`` otherwise (which ``describe()`` says: not pretrained).
Dropout is set to 0, so that training is deterministic and K stacked replicas equal K separate runs.
Nothing is downloaded: every file is read with ``local_files_only``.

The sweep adapts the network with infobound's own ``LoRALinear`` (the LoRA of PEFT: ``W0 + (α/r) B A``,
PEFT's layer names; ``export_peft_adapter`` writes a trained replica as a PEFT adapter folder), every
mode, seed, bit width and the store as for the built-in tasks. K stacked replicas run through the
network as one batch of K·b examples (``lora.folded_replicas``). Default targets: the attention's query
and value projections (``query``/``value``, ``q_proj``/``v_proj``, ``q_lin``/``v_lin`` or ``q``/``v``,
whichever the model has) and the classification head's linear layers, which must learn the task's
classes.

Inputs reach the network as float32 rows: token ids (exact below 2²⁴) for texts, pixels in [0, 1]
normalised by the model folder's ``preprocessor_config.json`` mean and std (default 0.5 and 0.5) for
images, resized to the config's ``image_size``.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ...hf_models import HF_CONFIG, head_names, read_model_config, require_hf
from ...lora import folded_replicas
from .base import STREAM_PRETRAIN, SplitTask, TaskConfig

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TASK_FILE_KEYS = {"model", "data", "text_column", "label_column", "image_column", "max_length",
                  "test_fraction", "seed", "targets"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
ATTENTION_PAIRS = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("q", "v"))
MAX_TOKEN_ID = 2 ** 24  # float32 holds every integer below it exactly


@dataclass(frozen=True)
class LocalConfig(TaskConfig):
    """``spec``: the task file (``local:PATH``); everything else lives in that file."""

    spec: str = ""
    _rules: ClassVar[dict[str, tuple]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.spec, str) or not self.spec.strip():
            raise InputError("task local needs its task file: local:PATH/TO/task.json (a JSON file naming "
                             "\"model\" and \"data\"; see infobound.harness.tasks.local)")


@dataclass(frozen=True)
class TaskFile:
    """The parsed task file, paths made absolute."""

    path: Path
    model: Path
    data: Path
    text_column: str = "text"
    label_column: str = "label"
    image_column: str = "image"
    max_length: int = 32
    test_fraction: float = 0.25
    seed: int = 0
    targets: tuple[str, ...] | None = None


def read_task_file(path: str | os.PathLike) -> TaskFile:
    """The task file at ``path``, checked: an ``InputError`` names the file and the bad key."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"task file {str(path)!r} does not exist (task local:PATH needs a JSON task file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"task file {str(path)!r} is not readable JSON: {exc}") from None
    where = f"task file {str(path)!r}"
    if not isinstance(data, dict):
        raise InputError(f"{where} must hold a JSON object with \"model\" and \"data\", got {type(data).__name__}")
    unknown = sorted(set(data) - TASK_FILE_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TASK_FILE_KEYS))}")
    for key in ("model", "data"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise InputError(f"{where}: \"{key}\" must be a path (relative to the task file), got {data.get(key)!r}")
    root = path.resolve().parent
    model, source = (root / Path(data[k]).expanduser() for k in ("model", "data"))
    options = {}
    for key in ("text_column", "label_column", "image_column"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise InputError(f"{where}: \"{key}\" must be a column name, got {data[key]!r}")
            options[key] = data[key]
    if "max_length" in data:
        value = data["max_length"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
            raise InputError(f"{where}: \"max_length\" must be an integer in [1, 4096], got {value!r}")
        options["max_length"] = value
    if "test_fraction" in data:
        value = data["test_fraction"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise InputError(f"{where}: \"test_fraction\" must be a number in (0, 1), got {value!r}")
        options["test_fraction"] = float(value)
    if "seed" in data:
        value = data["seed"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{where}: \"seed\" must be an integer >= 0, got {value!r}")
        options["seed"] = value
    if "targets" in data:
        value = data["targets"]
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",")]
        if not isinstance(value, list) or not value or not all(isinstance(t, str) and t for t in value):
            raise InputError(f"{where}: \"targets\" must be a list of layer names, got {data['targets']!r}")
        options["targets"] = tuple(value)
    return TaskFile(path.resolve(), model.resolve(), source.resolve(), **options)


# --------------------------------------------------------------------------------------- data
def _sorted_labels(labels: list[str]) -> list[str]:
    try:
        return sorted(set(labels), key=lambda v: int(v))
    except ValueError:
        return sorted(set(labels))


def read_examples(spec: TaskFile) -> tuple[str, list, list[str], list[str]]:
    """``(kind, items, labels, classes)``: kind ``text`` (items are strings) or ``image`` (items are
    image paths); labels as strings; classes in label order."""
    source = spec.data
    if source.is_dir():
        classes = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise InputError(f"data folder {str(source)!r} has no class subfolders (one folder of files per class)")
        items, labels, kinds = [], [], set()
        for name in classes:
            for f in sorted((source / name).iterdir()):
                suffix = f.suffix.lower()
                if f.is_file() and suffix == ".txt":
                    kinds.add("text")
                    items.append(f.read_text(encoding="utf-8", errors="replace").strip())
                elif f.is_file() and suffix in IMAGE_EXTENSIONS:
                    kinds.add("image")
                    items.append(f)
                else:
                    continue
                labels.append(name)
        if len(kinds) != 1:
            raise InputError(f"data folder {str(source)!r} must hold either .txt files or images "
                             f"({', '.join(IMAGE_EXTENSIONS)}) in its class folders, found "
                             f"{'both' if kinds else 'neither'}")
        return kinds.pop(), items, labels, [c for c in classes if c in set(labels)]
    if not source.is_file():
        raise InputError(f"data {str(source)!r} does not exist (a CSV file or a folder of class subfolders)")
    try:
        with open(source, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"data {str(source)!r} is not a readable CSV: {exc}") from None
    columns = list(rows[0]) if rows else []
    if spec.label_column not in columns:
        raise InputError(f"data {str(source)!r} has no label column {spec.label_column!r} (set \"label_column\"); "
                         f"columns: {', '.join(columns) or '(none)'}")
    if spec.text_column in columns:
        kind, column = "text", spec.text_column
    elif spec.image_column in columns:
        kind, column = "image", spec.image_column
    else:
        raise InputError(f"data {str(source)!r} needs a text column {spec.text_column!r} or an image column "
                         f"{spec.image_column!r} (set \"text_column\" or \"image_column\"); columns: {', '.join(columns)}")
    labels = [(row[spec.label_column] or "").strip() for row in rows]
    if any(not label for label in labels):
        raise InputError(f"data {str(source)!r}: row {labels.index('') + 2} has an empty label")
    items = [row[column] or "" for row in rows]
    if kind == "image":
        items = [(source.parent / p).resolve() for p in items]
        absent = [str(p) for p in items if not p.is_file()]
        if absent:
            raise InputError(f"data {str(source)!r}: {len(absent)} image file(s) do not exist, e.g. {absent[0]!r}")
    return kind, items, labels, _sorted_labels(labels)


def _image_settings(folder: Path, config) -> tuple[int, int, float | list, float | list]:
    size = getattr(config, "image_size", None)
    channels = getattr(config, "num_channels", None)
    if not isinstance(size, int) or not isinstance(channels, int) or channels not in (1, 3):
        raise InputError(f"model {str(folder)!r}: an image model's config needs an integer image_size and "
                         f"num_channels 1 or 3, got image_size={size!r}, num_channels={channels!r}")
    mean, std = 0.5, 0.5
    processor = folder / "preprocessor_config.json" if folder.is_dir() else None
    if processor is not None and processor.is_file():
        try:
            data = json.loads(processor.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{str(processor)!r} is not readable JSON: {exc}") from None
        mean, std = data.get("image_mean", mean), data.get("image_std", std)
    return size, channels, mean, std


def load_images(paths: list[Path], size: int, channels: int, mean, std) -> np.ndarray:
    """``(n, channels·size·size)`` float32: each image converted to L or RGB, resized (bilinear) to
    size × size, scaled to [0, 1], then ``(x − mean) / std`` per channel."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), channels, size, size), np.float32)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"image {str(p)!r} cannot be read: {exc}") from None
        out[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    return ((out - m) / s).reshape(len(paths), -1)


# -------------------------------------------------------------------------------------- network
class HFClassifier(nn.Module):
    """A transformers classification model taking infobound's float rows: ``(*lead, d)`` -> ``(*lead, C)``.

    Text rows are token ids (padding ``pad_id`` masked out); image rows are flattened pixel values.
    A stacked input ``(K, b, d)`` runs as one batch of K·b (``lora.folded_replicas``)."""

    def __init__(self, model: nn.Module, kind: str, pad_id: int | None = None,
                 image_shape: tuple[int, int, int] | None = None):
        super().__init__()
        self.model, self.kind, self.pad_id, self.image_shape = model, kind, pad_id, image_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, d = x.shape
        flat = x.reshape(-1, d)
        with folded_replicas():
            if self.kind == "text":
                ids = flat.long()
                logits = self.model(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits
            else:
                logits = self.model(pixel_values=flat.reshape(-1, *self.image_shape)).logits
        return logits.reshape(*lead, logits.shape[-1])


def _weights_present(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in WEIGHT_FILES)


def _no_dropout(config) -> list[str]:
    """Set every dropout probability of ``config`` to 0; the names of those that were not."""
    changed = []
    for key, value in list(config.to_dict().items()):
        if "dropout" in key and isinstance(value, float) and not isinstance(value, bool):
            if value:
                changed.append(key)
            setattr(config, key, 0.0)
    return changed


@functools.lru_cache(maxsize=8)
def _prepared(spec_path: str, mtime: float) -> dict:
    """Everything a ``LocalTask`` reads from disk (once per process and task file version)."""
    require_hf("task local", HF_CONFIG)
    import transformers

    spec = read_task_file(spec_path)
    if not spec.model.exists():
        raise InputError(f"model {str(spec.model)!r} does not exist (a folder with config.json, or a config.json)")
    read_model_config(spec.model)  # a clear error for a missing config.json or one that is no model config
    kind, items, labels, classes = read_examples(spec)
    if len(classes) < 2:
        raise InputError(f"data {str(spec.data)!r} has {len(classes)} class(es); classification needs at least 2")
    counts = {c: labels.count(c) for c in classes}
    if min(counts.values()) < 2:
        few = [c for c, k in counts.items() if k < 2]
        raise InputError(f"data {str(spec.data)!r}: class(es) {', '.join(few)} have fewer than 2 examples; "
                         "a stratified split needs at least 2 per class")
    folder = spec.model if spec.model.is_dir() else spec.model.parent
    config_file = spec.model / "config.json" if spec.model.is_dir() else spec.model
    try:
        config = transformers.AutoConfig.from_pretrained(str(config_file), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"model {str(spec.model)!r}: transformers cannot read its config: "
                         f"{' '.join(str(exc).split())[:300]}") from None
    auto = "AutoModelForSequenceClassification" if kind == "text" else "AutoModelForImageClassification"
    y = np.array([classes.index(label) for label in labels], np.int64)
    if kind == "text":
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"model {str(folder)!r} has no tokenizer transformers can load (a text task needs "
                             f"tokenizer.json or the tokenizer's files in the model folder): "
                             f"{' '.join(str(exc).split())[:200]}") from None
        if tokenizer.pad_token_id is None:
            raise InputError(f"the tokenizer in {str(folder)!r} has no pad token; set one (pad_token) and save it")
        if len(tokenizer) >= MAX_TOKEN_ID:
            raise InputError(f"the tokenizer in {str(folder)!r} has {len(tokenizer)} tokens; at most {MAX_TOKEN_ID} fit")
        ids = tokenizer(list(items), padding="max_length", truncation=True, max_length=spec.max_length)["input_ids"]
        x = np.asarray(ids, np.float32)
        extra = {"pad_id": int(tokenizer.pad_token_id)}
        tokens = spec.max_length
    else:
        size, channels, mean, std = _image_settings(folder, config)
        x = load_images(list(items), size, channels, mean, std)
        extra = {"image_shape": (channels, size, size)}
        patch = getattr(config, "patch_size", None)
        tokens = (size // patch) ** 2 + 1 if isinstance(patch, int) and patch > 0 else 1
    return {"spec": spec, "kind": kind, "x": x, "y": y, "classes": classes, "auto": auto, "folder": folder,
            "config_file": config_file, "pretrained": _weights_present(folder), "extra": extra, "tokens": tokens}


class LocalTask(SplitTask):
    """A user's transformers model and labelled data (module docstring), split once into a training
    pool and a stratified test set; supersamples and per-seed splits draw from both."""

    name, config_class = "local", LocalConfig
    shift_setting = "spec"
    loss_kind = "zero_one"
    default_targets = ()
    prior_statement = ("infobound cannot check that the model's weights never saw these examples; the "
                       "certificates assume it (the prior must not depend on the fine-tuning data).")

    def __init__(self, config: LocalConfig | None = None):
        super().__init__(config)
        path = Path(self.config.spec).expanduser()
        mtime = path.stat().st_mtime if path.is_file() else 0.0
        data = _prepared(str(path.resolve() if path.exists() else path), mtime)
        self._data_cache = data
        self.spec: TaskFile = data["spec"]
        self.kind = data["kind"]
        self.classes = data["classes"]
        self.n_classes = self.d_out = len(self.classes)
        self.d_in = int(data["x"].shape[1])
        from sklearn.model_selection import train_test_split

        everything = np.arange(len(data["y"]))
        test_n = max(len(self.classes), int(round(self.spec.test_fraction * len(everything))))
        if len(everything) - test_n < len(self.classes):
            raise InputError(f"data {str(self.spec.data)!r} has {len(everything)} examples: too few to hold out "
                             f"{test_n} for the test set and train on the rest")
        pool, test = train_test_split(everything, test_size=test_n, stratify=data["y"], random_state=self.spec.seed)
        self.pretrain_indices = np.array([], np.int64)
        self.target_indices, self.test_indices = np.sort(pool), np.sort(test)
        self.max_n = len(pool)
        self.max_pairs = len(everything) // 2
        self.tokens_per_example = data["tokens"]
        self.default_batch_size = 32
        if self.spec.targets is not None:
            self.default_targets = self.spec.targets
        else:
            self.default_targets = self._discover_targets()

    @staticmethod
    def canonical_setting(value: str) -> str:
        """The task file as an absolute path: the same task has the same store keys from any folder,
        and workers started elsewhere find it."""
        return str(Path(value).expanduser().resolve())

    # ------------------------------------------------------------------------------- network
    def architecture(self) -> nn.Module:
        """The network with random weights from torch's global RNG (fork it), dropout off."""
        import transformers

        config = self._config()
        model = getattr(transformers, self._data_cache["auto"]).from_config(config)
        return HFClassifier(model, self.kind, **self._data_cache["extra"])

    def _config(self):
        import transformers

        config = transformers.AutoConfig.from_pretrained(str(self._data_cache["config_file"]), local_files_only=True,
                                                         num_labels=self.n_classes)
        _no_dropout(config)
        return config

    def base_model(self) -> nn.Module:
        """The model folder's weights (a new head for these classes initialised from ``seed``), or random
        weights from ``seed`` when the folder has none; identical on every call."""
        import transformers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([self.spec.seed, STREAM_PRETRAIN]).generate_state(1)[0]))
            if not self._data_cache["pretrained"]:
                return self.architecture()
            config = self._config()
            verbosity = transformers.logging.get_verbosity()
            transformers.logging.set_verbosity_error()  # "newly initialized" head: describe() says so
            try:
                model = getattr(transformers, self._data_cache["auto"]).from_pretrained(
                    str(self._data_cache["folder"]), config=config, local_files_only=True,
                    ignore_mismatched_sizes=True)
            except (OSError, ValueError, RuntimeError) as exc:
                raise InputError(f"model {str(self._data_cache['folder'])!r}: its weights do not load: "
                                 f"{' '.join(str(exc).split())[:300]}") from None
            finally:
                transformers.logging.set_verbosity(verbosity)
        return HFClassifier(model, self.kind, **self._data_cache["extra"])

    def _discover_targets(self) -> tuple[str, ...]:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = self.architecture()  # names and shapes only: no memory, no initialisation cost
        linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
        last = {n.rsplit(".", 1)[-1] for n in linears}
        attention = next((pair for pair in ATTENTION_PAIRS if set(pair) <= last), ())
        heads = head_names(net.model)
        head = [n.removeprefix("model.") for n in linears
                if any(n == f"model.{h}" or n.startswith(f"model.{h}.") for h in heads)]
        targets = (*attention, *head)
        if not targets:
            raise InputError(f"model {str(self.spec.model)!r}: no query/value projections or classification head "
                             f"found among its linear layers ({', '.join(sorted(last))}); set \"targets\" in the task file")
        return targets

    # ---------------------------------------------------------------------------------- data
    def _data(self, indices: np.ndarray, target: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._data_cache["x"], self._data_cache["y"]
        return torch.from_numpy(np.ascontiguousarray(x[indices])), torch.from_numpy(y[indices].copy())

    def pretrain_set(self):
        raise InputError("task local has no pretraining set: the model comes pretrained (or random) from its folder")

    def source_test_set(self):
        return self.test_set()

    def describe(self) -> str:
        data = self._data_cache
        weights = ("its weights, the classification head for these classes initialised from seed "
                   f"{self.spec.seed} where they have none" if data["pretrained"]
                   else f"random weights from seed {self.spec.seed}: the folder has no weights file, so the "
                   "network is not pretrained")
        counts = np.bincount(data["y"], minlength=self.n_classes)
        what = (f"texts tokenized to {self.spec.max_length} tokens" if self.kind == "text"
                else "images {}x{}x{}".format(*data["extra"]["image_shape"]))
        return (f"local: {len(data['y'])} labelled {what} from {str(self.spec.data)!r} ({self.n_classes} classes: "
                + ", ".join(f"{c} ({k})" for c, k in zip(self.classes, counts))
                + f"), split once (seed {self.spec.seed}): {self.max_n} training pool, {len(self.test_indices)} test "
                f"(stratified). Network: {data['auto']} of {str(data['folder'])!r} with {weights}; dropout set to 0. "
                f"Adapted layers by default: {', '.join(self.default_targets)}. {self.prior_statement}")

