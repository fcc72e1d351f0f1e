"""Batched augmentation on the training device, for 48x48 grayscale faces.

One ``affine_grid`` + ``grid_sample`` call per batch does the shifted/zoomed crop, the small
rotation, the horizontal flip and the resize to the model's input size; brightness/contrast and
random erasing follow as tensor arithmetic. No data-loader workers are needed, which matters on a
2-core CPU, and on a GPU the whole dataset stays in device memory.
With ``augment=None`` the same path is a plain bilinear resize (evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fer_ensemble.preprocess import Preprocessing


@dataclass(frozen=True)
class AugmentConfig:
    zoom: tuple[float, float] = (0.85, 1.2)  # >1 zooms in (a tighter crop)
    shift: float = 0.1  # of the image size, each axis
    rotate_deg: float = 12.0
    flip: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    erase_prob: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.15)


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _affine(n: int, cfg: AugmentConfig, generator, device) -> torch.Tensor:
    zoom = _uniform(n, *cfg.zoom, generator, device)
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, generator, device) * math.pi / 180
    flip = torch.ones(n, device=device)
    if cfg.flip:
        flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -flip, flip)
    shift = _uniform(2 * n, -2 * cfg.shift, 2 * cfg.shift, generator, device).view(n, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], dim=1),
            torch.stack([sin * flip, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    return theta


def _erase(batch: torch.Tensor, cfg: AugmentConfig, generator) -> torch.Tensor:
    n, _, size, _ = batch.shape
    device = batch.device
    area = _uniform(n, *cfg.erase_area, generator, device)
    log_ratio = _uniform(n, math.log(0.3), math.log(3.3), generator, device)
    height = (torch.sqrt(area * torch.exp(log_ratio)) * size).clamp(1, size)
    width = (torch.sqrt(area / torch.exp(log_ratio)) * size).clamp(1, size)
    top = torch.rand(n, generator=generator, device=device) * (size - height)
    left = torch.rand(n, generator=generator, device=device) * (size - width)
    coords = torch.arange(size, device=device, dtype=batch.dtype)
    rows = (coords[None] >= top[:, None]) & (coords[None] < (top + height)[:, None])
    cols = (coords[None] >= left[:, None]) & (coords[None] < (left + width)[:, None])
    apply = torch.rand(n, generator=generator, device=device) < cfg.erase_prob
    mask = rows[:, :, None] & cols[:, None, :] & apply[:, None, None]
    noise = torch.rand(batch.shape, generator=generator, device=device, dtype=batch.dtype)
    return torch.where(mask[:, None], noise, batch)


def make_batch(
    images: torch.Tensor,
    preprocessing: Preprocessing,
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 faces (N, H, W) on any device -> normalised float input (N, 3, S, S)."""
    n = images.shape[0]
    device = images.device
    size = preprocessing.input_size
    batch = images[:, None].float() / 255.0
    if augment is None:
        if batch.shape[-1] != size or batch.shape[-2] != size:
            shrinking = size < max(batch.shape[-2:])
            batch = F.interpolate(
                batch, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
            )
    else:
        theta = _affine(n, augment, generator, device)
        grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
        batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
        brightness = _uniform(n, 1 - augment.brightness, 1 + augment.brightness, generator, device)
        contrast = _uniform(n, 1 - augment.contrast, 1 + augment.contrast, generator, device)
        mean = batch.mean(dim=(1, 2, 3), keepdim=True)
        batch = ((batch - mean) * contrast.view(n, 1, 1, 1) + mean) * brightness.view(n, 1, 1, 1)
        batch = batch.clamp(0, 1)
        if augment.erase_prob > 0:
            batch = _erase(batch, augment, generator)
    mean = torch.tensor(preprocessing.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, device=device).view(1, 3, 1, 1)
    return (batch.expand(-1, 3, -1, -1) - mean) / std
