"""Training throughput (img/s) per member, input size and precision (``fer-ensemble benchmark-train``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import torch

from fer_ensemble.models import create_model, model_preprocessing
from fer_ensemble.training.augment import AugmentConfig, make_batch
from fer_ensemble.training.engine import target_loss, train_step


@dataclass
class ThroughputRow:
    """One measured configuration: a member at an input size (pixels) and precision, its batch size,
    training images per second and the minutes one FER+ epoch would take at that pace."""

    model: str
    input_size: int
    precision: str
    batch_size: int
    images_per_second: float
    minutes_per_epoch: float  # 25,045 FER+ majority training images


TRAIN_IMAGES = 25_045
"""FER+'s training images under the majority protocol: what minutes per epoch are counted for."""


def measure_training(name: str, input_size: int, precision: str, batch_size: int, steps: int,
                     warmup: int, device: torch.device) -> ThroughputRow:
    """Full training steps (augmentation, then the trainer's own ``train_step``: forward, loss,
    backward, SGD) on random faces."""
    torch.manual_seed(0)
    model = create_model(name, input_size=input_size)
    preprocessing = model_preprocessing(model)
    # torch's stubs have no overload of to(device, memory_format=), which torch accepts
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randint(0, 256, (batch_size, 48, 48), dtype=torch.uint8, device=device)
    targets = torch.softmax(torch.randn(batch_size, 8, device=device), dim=1)
    generator = torch.Generator(device).manual_seed(0)
    augment = AugmentConfig()
    loss_of = partial(target_loss, mode="crossentropy", label_smoothing=0.1)
    elapsed = 0.0
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        train_step(model, optimizer, make_batch(images, preprocessing, augment, generator), targets, loss_of,
                   precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            elapsed += time.perf_counter() - started
    rate = steps * batch_size / elapsed
    return ThroughputRow(name, input_size, precision, batch_size, round(rate, 1),
                         round(TRAIN_IMAGES / rate / 60, 2))


def format_table(rows: list[ThroughputRow]) -> str:
    """Markdown table with the bf16 speed-up over fp32 for the same model and size."""
    fp32 = {(r.model, r.input_size): r.images_per_second for r in rows if r.precision == "fp32"}
    lines = ["| model | input | precision | batch | img/s | min/epoch (FER+ train) | vs fp32 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        base = fp32.get((r.model, r.input_size))
        ratio = f"{r.images_per_second / base:.2f}x" if base else "-"
        lines.append(f"| {r.model} | {r.input_size} | {r.precision} | {r.batch_size} | "
                     f"{r.images_per_second:.0f} | {r.minutes_per_epoch:.1f} | {ratio} |")
    return "\n".join(lines)


def measure_all(models: list[str], sizes: list[int], precisions: list[str], batch_size: int, steps: int,
                warmup: int, device: torch.device) -> list[ThroughputRow]:
    """``measure_training`` for every model, input size and precision, in that order."""
    return [measure_training(name, size, precision, batch_size, steps, warmup, device)
            for name in models for size in sizes for precision in precisions]
