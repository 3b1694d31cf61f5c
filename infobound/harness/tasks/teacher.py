"""``teacher``: x ~ N(0, I) labelled by a random teacher MLP; the target teacher has a rank-k change.

The student is pretrained on the source teacher's labels and adapted to the target teacher's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ...errors import InputError
from ...validation import check_choice, check_int
from .base import (STREAM_CALIB, STREAM_PRETRAIN, STREAM_SUPERSAMPLE, STREAM_TEACHER, STREAM_TEST_X, STREAM_TRAIN_X, PretrainedMLP,
                   TaskConfig, random_orthonormal, stream_rng)

@dataclass(frozen=True)
class TeacherConfig(TaskConfig):
    """Teacher ``d_in -> teacher_hidden -> teacher_hidden -> n_classes`` (ReLU); student
    ``d_in -> hidden -> hidden -> n_classes``. Each teacher matrix W in ``delta_layers`` gets
    Δ = delta_scale · ‖W‖₂ · U Vᵀ (U, V random orthonormal, ``delta_rank`` columns): every singular
    value of Δ is delta_scale times W's largest."""

    d_in: int = 16
    n_classes: int = 4
    teacher_hidden: int = 32
    hidden: int = 64
    delta_rank: int = 2
    delta_scale: float = 1.0
    delta_layers: tuple[str, ...] = ("fc1",)
    pretrain_samples: int = 20_000
    pretrain_steps: int = 3000
    pretrain_lr: float = 3e-3
    batch_size: int = 256
    test_size: int = 5000
    max_n: int = 10**6
    _rules: ClassVar[dict[str, tuple]] = {
        "d_in": ("int", 1), "n_classes": ("int", 2), "teacher_hidden": ("int", 1), "hidden": ("int", 1),
        "delta_scale": ("float", 0.0), "pretrain_samples": ("int", 1), "pretrain_steps": ("int", 0),
        "pretrain_lr": ("float", 0.0, 1.0, True), "batch_size": ("int", 1), "test_size": ("int", 1),
        "max_n": ("int", 1),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        layers = self.delta_layers.split(",") if isinstance(self.delta_layers, str) else self.delta_layers
        layers = tuple(dict.fromkeys(check_choice("delta_layers", str(k).strip(), ("fc1", "fc2")) for k in layers))
        if not layers:
            raise InputError("delta_layers must name at least one of fc1, fc2")
        self._set("delta_layers", layers)
        max_rank = {"fc1": min(self.teacher_hidden, self.d_in), "fc2": self.teacher_hidden}
        self._set("delta_rank", check_int("delta_rank", self.delta_rank, 1, min(max_rank[k] for k in layers)))


def teacher_logits(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits (n, C) of a teacher ``{fc1, fc2, head[, head_bias]}`` (float64 arrays) at x (n, d_in)."""
    hidden = np.maximum(np.maximum(x @ weights["fc1"].T, 0.0) @ weights["fc2"].T, 0.0)
    return hidden @ weights["head"].T + weights.get("head_bias", 0.0)


class TeacherTask(PretrainedMLP):
    """x ~ N(0, I); labels = argmax of a random teacher MLP; the target teacher has a rank-k change.

    ``source_teacher`` / ``target_teacher``: float64 weights ``{fc1, fc2, head, head_bias}`` (for
    ``teacher_logits``); ``deltas``: the added matrices by layer name. Hidden layers have no bias;
    the head bias is minus the mean source logit on a calibration sample, which balances the classes.
    """

    name, config_class = "teacher", TeacherConfig
    prior_statement = ("Pretraining inputs come from their own random stream and carry the source teacher's "
                       "labels; every fine-tuning, test and supersample input is a fresh draw of another "
                       "stream, so the pretrained network never saw them and is part of the certificates' prior.")

    def __init__(self, config: TeacherConfig | None = None):
        super().__init__(config)
        cfg = self.config
        self.d_in, self.d_out, self.n_classes, self.max_n = cfg.d_in, cfg.n_classes, cfg.n_classes, cfg.max_n
        self.max_pairs = cfg.max_n
        rng, h = stream_rng(cfg.seed, STREAM_TEACHER), cfg.teacher_hidden
        source = {  # He-scaled Gaussian weights
            "fc1": rng.standard_normal((h, cfg.d_in)) * math.sqrt(2.0 / cfg.d_in),
            "fc2": rng.standard_normal((h, h)) * math.sqrt(2.0 / h),
            "head": rng.standard_normal((cfg.n_classes, h)) / math.sqrt(h),
        }
        calibration = stream_rng(cfg.seed, STREAM_CALIB).standard_normal((20_000, cfg.d_in))
        source["head_bias"] = -teacher_logits(source, calibration).mean(axis=0)
        self.deltas = {}
        for layer in cfg.delta_layers:
            w = source[layer]
            u, v = random_orthonormal(rng, w.shape[0], cfg.delta_rank), random_orthonormal(rng, w.shape[1], cfg.delta_rank)
            self.deltas[layer] = cfg.delta_scale * np.linalg.norm(w, 2) * (u @ v.T)  # (out, k) @ (k, in)
        self.source_teacher = source
        self.target_teacher = {k: w + self.deltas.get(k, 0.0) for k, w in source.items()}

    def _draw(self, n: int, seed: int, tag: int, target: bool = True):
        x = stream_rng(seed, tag).standard_normal((n, self.d_in))  # filled row by row: prefix-consistent
        y = teacher_logits(self.target_teacher if target else self.source_teacher, x).argmax(axis=1)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    def _train_set(self, n: int, seed: int):
        return self._draw(n, seed, STREAM_TRAIN_X)

    def _supersample(self, n: int, seed: int):
        return self._draw(2 * n, seed, STREAM_SUPERSAMPLE)

    def test_set(self):
        return self._draw(self.config.test_size, self.config.seed, STREAM_TEST_X)

    def source_test_set(self):
        return self._draw(self.config.test_size, self.config.seed, STREAM_TEST_X, target=False)

    def pretrain_set(self):
        return self._draw(self.config.pretrain_samples, self.config.seed, STREAM_PRETRAIN, target=False)

    def describe(self) -> str:
        cfg, (src, tgt) = self.config, self._accuracies()
        changed = float((self.source_test_set()[1] != self.test_set()[1]).float().mean())
        return (f"teacher: x ~ N(0, I_{cfg.d_in}), labels = argmax of a random {cfg.d_in}-{cfg.teacher_hidden}-"
                f"{cfg.teacher_hidden}-{cfg.n_classes} ReLU teacher (seed {cfg.seed}); target: rank-{cfg.delta_rank} "
                f"change of {', '.join(cfg.delta_layers)} (singular values {cfg.delta_scale} x its spectral norm), "
                f"changing {changed:.1%} of the test labels. Student {cfg.hidden} wide, pretrained on "
                f"{cfg.pretrain_samples} source samples. Test: {cfg.test_size} fresh samples; training sets: fresh "
                f"draws per seed (n <= {cfg.max_n}). Pretrained test accuracy {src:.1%} source, {tgt:.1%} target. "
                f"{self.prior_statement}")
