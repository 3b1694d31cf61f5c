"""Tiny transformers models (random weights, built from configs) and generated labelled data on disk,
for the ``local`` task's tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

VOCAB = ["[PAD]", "[UNK]", *[f"w{i}" for i in range(12)]]


def text_model(folder: Path, weights: bool = False, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 16) and a word-level tokenizer over VOCAB, saved to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(folder)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    if weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            BertForSequenceClassification(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    return folder


def text_csv(path: Path, n: int = 120, seed: int = 0) -> Path:
    """n sentences of 3-8 words; label 1 when w0 or w1 occurs more often than w2, else 0."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            words = [f"w{int(i)}" for i in rng.integers(0, 12, rng.integers(3, 9))]
            label = int(sum(w in ("w0", "w1") for w in words) > words.count("w2"))
            writer.writerow([" ".join(words), label])
    return path


def image_model(folder: Path) -> Path:
    """A 1-block ViT config (8×8 grey images, 4×4 patches, hidden 16), no weights."""
    from transformers import ViTConfig

    ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=32).save_pretrained(folder)
    return folder


def image_folder(folder: Path, per_class: int = 20, seed: int = 0) -> Path:
    """Class folders ``left`` / ``right`` of 8×8 PNGs, brighter on that half, plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, side in (("left", 0), ("right", 1)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.uniform(0, 0.4, (8, 8))
            img[:, side * 4:side * 4 + 4] += 0.5
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), mode="L").save(folder / label / f"{i}.png")
    return folder


def task_file(path: Path, **entries) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in entries.items()}))
    return path
