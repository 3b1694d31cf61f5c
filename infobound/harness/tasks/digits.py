"""``digits``: scikit-learn's bundled 8×8 digits; the target is the images under a fixed transform.

The network is pretrained on the original images of one part of the data and adapted to the
transformed images of another part; a third part is the test set. Nothing is downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ...errors import InputError
from .base import SplitTask, TaskConfig

DIGIT_TRANSFORMS = {
    "mirror": (lambda img: img[..., :, ::-1], "horizontal mirror (column j -> 7 - j)"),
    "flip": (lambda img: img[..., ::-1, :], "vertical flip (row i -> 7 - i)"),
    "rotate180": (lambda img: img[..., ::-1, ::-1], "rotation by 180 degrees"),
    "transpose": (lambda img: np.swapaxes(img, -1, -2), "transpose (pixel (i, j) -> (j, i))"),
}
"""Target transforms of the 8×8 images: name -> (function on (..., 8, 8) arrays, description)."""


@dataclass(frozen=True)
class DigitsConfig(TaskConfig):
    """Digits. Default split (stratified, seed 0): 718 pretraining / 719 target pool / 360 test."""

    transform: str = "mirror"
    hidden: int = 64
    test_fraction: float = 0.2  # of all 1,797 images
    target_fraction: float = 0.5  # of the images left after the test set
    pretrain_steps: int = 1000
    pretrain_lr: float = 1e-3
    batch_size: int = 128
    _rules: ClassVar[dict[str, tuple]] = {
        "transform": ("choice", tuple(DIGIT_TRANSFORMS)), "hidden": ("int", 1),
        "test_fraction": ("float", 0.05, 0.9), "target_fraction": ("float", 0.05, 0.95),
        "pretrain_steps": ("int", 0), "pretrain_lr": ("float", 0.0, 1.0, True), "batch_size": ("int", 1),
    }


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``images (1797, 8, 8)`` float32 in [0, 1] (pixels / 16) and ``labels (1797,)`` int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()  # bundled with scikit-learn: nothing is downloaded
    images, labels = (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


class DigitsTask(SplitTask):
    """8×8 digits, 10 classes: pretrained on the original images, adapted to transformed ones.

    ``pretrain_indices``, ``target_indices`` (the pool training sets are drawn from) and
    ``test_indices`` index ``sklearn.datasets.load_digits()``; they are disjoint and cover it.
    """

    name, config_class = "digits", DigitsConfig
    shift_setting = "transform"
    prior_statement = ("The pretraining images are disjoint from the target pool, the test set and every "
                       "supersample, so the pretrained network never saw fine-tuning or test data and is "
                       "part of the certificates' prior.")
    d_in, d_out, n_classes = 64, 10, 10

    def __init__(self, config: DigitsConfig | None = None):
        super().__init__(config)
        from sklearn.model_selection import train_test_split

        cfg = self.config
        self.images, self.labels = _digits_arrays()
        try:
            rest, test = train_test_split(np.arange(len(self.labels)), test_size=cfg.test_fraction,
                                          stratify=self.labels, random_state=cfg.seed)
            pretrain, target = train_test_split(rest, test_size=cfg.target_fraction,
                                                stratify=self.labels[rest], random_state=cfg.seed)
        except ValueError as err:
            raise InputError(f"test_fraction / target_fraction leave a split too small to stratify: {err}") from None
        self.pretrain_indices, self.target_indices, self.test_indices = pretrain, target, test
        self.max_n = len(target)
        self.max_pairs = (len(target) + len(test)) // 2  # supersamples draw from the pool and the test set
        self._transform, self._transform_text = DIGIT_TRANSFORMS[cfg.transform]

    def _data(self, indices: np.ndarray, target: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        images = self._transform(self.images[indices]) if target else self.images[indices]
        x = torch.from_numpy(np.ascontiguousarray(images).reshape(len(indices), 64))  # (n, 64)
        return x, torch.from_numpy(self.labels[indices].copy())

    shift_side = "input"  # every transform moves pixels: what the first layer reads changes

    def source_test_set(self):
        return self._data(self.test_indices, target=False)

    def pretrain_set(self):
        return self._data(self.pretrain_indices, target=False)

    def describe(self) -> str:
        cfg, (src, tgt) = self.config, self._accuracies()
        sizes = f"{len(self.pretrain_indices)} pretraining, {self.max_n} target training pool, {len(self.test_indices)}"
        return (f"digits: scikit-learn's 1,797 8x8 images (pixels / 16), split once, stratified (seed {cfg.seed}): "
                f"{sizes} test. Network 64-{cfg.hidden}-{cfg.hidden}-10 pretrained on the original images "
                f"({cfg.pretrain_steps} Adam steps). Target: {self._transform_text}. Pretrained test accuracy "
                f"{src:.1%} on the original images, {tgt:.1%} on the target. Supersamples: pairs drawn from the "
                f"target pool and the test set ({self.max_pairs} pairs at most). {self.prior_statement}")
