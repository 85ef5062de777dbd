"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the
same random, differentiable transformation T of every image the discriminator sees, real and fake, in
D's step and in G's, so that D cannot memorise the training set and G still learns through T.

The two policies that keep a digit a digit, as the official DiffAugment_pytorch.py defines them
(mit-han-lab/data-efficient-gans): translation by up to 1/8 of a side, vacated pixels 0, and cutout
of a square of half a side, set to 0 (mid-grey of [-1, 1]), its centre anywhere in the image. Their
randomness comes in as uniforms `u` [N, 2] per policy, drawn by the caller from the run's noise
generator, so that a checkpoint continues the same augmentations bit-exactly.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

DRAWS_PER_POLICY = 2  # uniforms per image each policy takes (a vertical and a horizontal one)


def _integers(u: torch.Tensor, count: int) -> torch.Tensor:
    """Uniforms in [0, 1) -> integers uniform in [0, count)."""
    return (u * count).long().clamp_(max=count - 1)


def translate(x: torch.Tensor, u: torch.Tensor, ratio: float = 1 / 8) -> torch.Tensor:
    """Each image moved by (dy, dx) whole pixels, uniform in [-s, s] with s = round(ratio * side), 0 where it left."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy, dx = _integers(u[:, 0], 2 * sy + 1) - sy, _integers(u[:, 1], 2 * sx + 1) - sx
    padded = F.pad(x, (sx, sx, sy, sy))
    rows = torch.arange(h, device=x.device) + sy - dy[:, None]  # out[i] = x[i - dy]: the pad where that is outside
    cols = torch.arange(w, device=x.device) + sx - dx[:, None]
    picked = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2)  # the advanced indices' dims come first: [N, H, W, C]


def cutout(x: torch.Tensor, u: torch.Tensor, ratio: float = 1 / 2) -> torch.Tensor:
    """Each image with a square of round(ratio * side) set to 0; its centre is uniform over the image (plus
    one position for an even size, as the official code), the part outside the image cut off."""
    _, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _integers(u[:, 0], h + 1 - ch % 2) - ch // 2
    left = _integers(u[:, 1], w + 1 - cw % 2) - cw // 2
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + ch)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + cw)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


POLICIES = {"translation": translate, "cutout": cutout}


def diff_augment(x: torch.Tensor, policies: tuple[str, ...], u: torch.Tensor) -> torch.Tensor:
    """T(x): the policies in order, policy i taking u[:, 2i:2i+2] (u: [N, DRAWS_PER_POLICY * len(policies)])."""
    for i, name in enumerate(policies):
        x = POLICIES[name](x, u[:, DRAWS_PER_POLICY * i:DRAWS_PER_POLICY * (i + 1)])
    return x
