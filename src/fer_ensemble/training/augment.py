"""Batched augmentation on the training device, for 48x48 grayscale faces.

One ``affine_grid`` + ``grid_sample`` call per batch does the shifted/zoomed crop, the small
rotation, the horizontal flip and the resize to the model's input size; brightness/contrast and
random erasing follow as tensor arithmetic. The "photo" preset adds what separates FER+'s web
crops from clean photos: wider framing jitter, blur / sharpening, lower resolution and gamma.
No data-loader workers are needed, which matters on a
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
    """The training augmentation's settings (``make_batch``), on the GPU or CPU alike; ``photo()``
    adds framing jitter, blur and sharpening, lower resolution and gamma (``--photo-augment``)."""

    zoom: tuple[float, float] = (0.85, 1.2)  # >1 zooms in (a tighter crop)
    shift: float = 0.1  # of the image size, each axis
    rotate_deg: float = 12.0
    flip: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    erase_prob: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.15)
    sharpen: float = 0.0  # unsharp-mask amount drawn from [-sharpen, sharpen]; -1 is a blur
    downscale_prob: float = 0.0  # share of faces seen at a lower resolution ...
    downscale: tuple[float, float] = (0.5, 1.0)  # ... this fraction of the 48 px (one draw per batch)
    gamma: float = 0.0  # gamma drawn from exp([-gamma, gamma])

    @classmethod
    def photo(cls, erase_prob: float = 0.25) -> AugmentConfig:
        """The preset that bridges web crops to clean photos (``--photo-augment``)."""
        return cls(zoom=(0.8, 1.25), shift=0.12, erase_prob=erase_prob, sharpen=1.0,
                   downscale_prob=0.3, gamma=0.4)


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


def _blur(batch: torch.Tensor) -> torch.Tensor:
    """A 3x3 binomial blur (sigma about 0.7 px), borders replicated."""
    kernel = torch.tensor([1.0, 2.0, 1.0], device=batch.device, dtype=batch.dtype) / 4
    kernel = (kernel[:, None] * kernel[None, :]).view(1, 1, 3, 3)
    return F.conv2d(F.pad(batch, (1, 1, 1, 1), mode="replicate"), kernel)


def _photometric_source(batch: torch.Tensor, cfg: AugmentConfig, generator) -> torch.Tensor:
    """Sharpness and resolution changes on the (N, 1, 48, 48) source faces."""
    n, device = batch.shape[0], batch.device
    if cfg.downscale_prob > 0:
        fraction = float(_uniform(1, *cfg.downscale, generator, device))
        small = max(4, round(batch.shape[-1] * fraction))
        low = F.interpolate(batch, size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        low = F.interpolate(low, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        chosen = torch.rand(n, generator=generator, device=device) < cfg.downscale_prob
        batch = torch.where(chosen.view(n, 1, 1, 1), low, batch)
    if cfg.sharpen > 0:
        amount = _uniform(n, -cfg.sharpen, cfg.sharpen, generator, device).view(n, 1, 1, 1)
        batch = (batch + amount * (batch - _blur(batch))).clamp(0, 1)
    return batch


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
        batch = _photometric_source(batch, augment, generator)
        theta = _affine(n, augment, generator, device)
        grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
        batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
        brightness = _uniform(n, 1 - augment.brightness, 1 + augment.brightness, generator, device)
        contrast = _uniform(n, 1 - augment.contrast, 1 + augment.contrast, generator, device)
        mean = batch.mean(dim=(1, 2, 3), keepdim=True)
        batch = ((batch - mean) * contrast.view(n, 1, 1, 1) + mean) * brightness.view(n, 1, 1, 1)
        batch = batch.clamp(0, 1)
        if augment.gamma > 0:
            gamma = torch.exp(_uniform(n, -augment.gamma, augment.gamma, generator, device))
            batch = batch.clamp_min(1e-6) ** gamma.view(n, 1, 1, 1)
        if augment.erase_prob > 0:
            batch = _erase(batch, augment, generator)
    mean = torch.tensor(preprocessing.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, device=device).view(1, 3, 1, 1)
    return (batch.expand(-1, 3, -1, -1) - mean) / std
