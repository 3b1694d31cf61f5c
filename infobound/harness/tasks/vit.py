"""A small vision transformer for 28×28 grey images, every linear map a named ``nn.Linear``.

``TinyViT`` cuts an image into 7×7 patches (16 of them), embeds each with ``patch`` (49 -> width),
prepends a learned class token, adds learned position embeddings and runs ``depth`` pre-LayerNorm
blocks (multi-head self-attention, then a GELU MLP); the class token, after a final LayerNorm, goes
through the classifier ``head``. There is no dropout: the network is deterministic in train mode too.

The linear layers LoRA can target: ``patch``, ``blocks.{i}.attn.q_proj`` / ``k_proj`` / ``v_proj`` /
``o_proj``, ``blocks.{i}.mlp.fc1`` / ``fc2`` and ``head``. The forward accepts ``(*lead, 784)``,
both ``(batch, 784)`` and a stack ``(K, batch, 784)``, and returns ``(*lead, classes)``: plain layers
broadcast over the leading dimensions, and a stacked ``LoRALinear`` receives ``(K, batch, tokens, d)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError

__all__ = ["TinyViT", "random_shift", "tiny_vit"]


class Attention(nn.Module):
    """Multi-head self-attention with separate ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise InputError(f"width {width} must be a multiple of heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.scale = self.head_dim ** -0.5
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (*lead, T, d)
        *lead, t, d = x.shape

        def split(h: torch.Tensor) -> torch.Tensor:  # (*lead, T, d) -> (N, heads, T, head_dim)
            return h.reshape(-1, t, self.heads, self.head_dim).transpose(1, 2)

        # explicit products: on CPU at 17 tokens they run about twice as fast as
        # scaled_dot_product_attention forward and backward, and are as deterministic
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)  # (N, heads, T, T)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(*lead, t, d)
        return self.o_proj(out)


class MLP(nn.Module):
    """``fc1 -> GELU -> fc2``."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.norm2, self.mlp = nn.LayerNorm(width), MLP(width, mlp_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A vision transformer for ``side×side`` grey images flattened to ``side²`` inputs (see the module
    docstring). Initialised from torch's global RNG (fork it for a repeatable draw)."""

    def __init__(self, classes: int = 10, side: int = 28, patch: int = 7, width: int = 64, depth: int = 2,
                 heads: int = 4, mlp_width: int = 128):
        super().__init__()
        if side % patch:
            raise InputError(f"image side {side} must be a multiple of the patch size {patch}")
        self.side, self.patch_size, self.grid = side, patch, side // patch
        self.width, self.depth, self.heads, self.mlp_width, self.classes = width, depth, heads, mlp_width, classes
        tokens = self.grid * self.grid + 1
        self.patch = nn.Linear(patch * patch, width)
        self.cls_token = nn.Parameter(torch.zeros(width))
        self.pos_embed = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    @property
    def d_in(self) -> int:
        return self.side * self.side

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``(*lead, side²)`` -> ``(*lead, patches, patch²)``, patches in row-major order."""
        *lead, d = x.shape
        if d != self.d_in:
            raise InputError(f"TinyViT expects inputs (..., {self.d_in}), got {tuple(x.shape)}")
        g, p = self.grid, self.patch_size
        x = x.reshape(-1, g, p, g, p).transpose(2, 3)  # (N, row, col, p, p)
        return x.reshape(*lead, g * g, p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(self.patches(x))  # (*lead, 16, width)
        cls = (self.cls_token + self.pos_embed[0]).expand(*h.shape[:-2], 1, self.width)
        h = torch.cat([cls, h + self.pos_embed[1:]], dim=-2)  # (*lead, 17, width)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h[..., 0, :]))  # the class token

    def extra_repr(self) -> str:
        return (f"image={self.side}x{self.side}, patch={self.patch_size}, width={self.width}, depth={self.depth}, "
                f"heads={self.heads}, mlp_width={self.mlp_width}, classes={self.classes}")


def tiny_vit(classes: int = 10) -> TinyViT:
    """The ``mnist`` task's ViT: 28×28 images, patch 7 (16 patches), width 64, depth 2, 4 heads, MLP
    width 128; fresh weights from torch's global RNG."""
    return TinyViT(classes=classes)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_shift(x: torch.Tensor, pixels: int, generator: torch.Generator, side: int = 28) -> torch.Tensor:
    """Each image of ``x`` (batch, side²) moved by its own random offset in [-pixels, pixels]² (drawn
    from ``generator``), the uncovered border filled with 0: the pretraining's data augmentation."""
    if pixels == 0:
        return x
    b = x.shape[0]
    padded = F.pad(x.reshape(b, side, side), (pixels, pixels, pixels, pixels))
    offsets = torch.randint(0, 2 * pixels + 1, (2, b), generator=generator)
    grid = torch.arange(side)
    rows = (offsets[0][:, None] + grid)[:, :, None]  # (b, side, 1)
    cols = (offsets[1][:, None] + grid)[:, None, :]  # (b, 1, side)
    return padded[torch.arange(b)[:, None, None], rows, cols].reshape(b, side * side)

