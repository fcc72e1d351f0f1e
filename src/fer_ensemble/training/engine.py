"""The training loop's parts: loss per label mode, weight EMA, sharded batches, ``train_one_epoch``
(one ``train_step`` per batch) and ``predict_probabilities``.

The loop never waits for the device inside an epoch: loss and accuracy are summed on the device
and read once at the end, so a GPU is not held back by one host sync per step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fer_ensemble.outputs import written_whole
from fer_ensemble.preprocess import Preprocessing
from fer_ensemble.training.augment import AugmentConfig, make_batch


def autocast(device: torch.device, precision: str):
    """bf16 autocast (CPU with AVX512-BF16 / AMX, or CUDA), or nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def target_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mode: str,
    label_smoothing: float = 0.0,
    generator: torch.Generator | None = None,
    logit_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """The FER+ paper's losses: one-hot / sampled one-hot / soft-target cross-entropy, or multi-target.

    ``logit_offset`` (``tau * log prior``) turns the loss into the logit-adjusted loss of Menon et
    al. (2021): the network's own logits then carry no class prior.
    """
    logits = logits.float()
    if logit_offset is not None:
        logits = logits + logit_offset
    if mode == "multi_target":
        epsilon = 1e-3
        accepted = (1 - epsilon) * (targets > 0).float() + epsilon
        best = (accepted * logits.softmax(dim=1)).max(dim=1).values
        return -torch.log(best.clamp_min(1e-12)).mean()
    if mode == "probability":  # a label drawn from the vote distribution at every step
        drawn = torch.multinomial(targets, 1, generator=generator).squeeze(1)
        targets = F.one_hot(drawn, targets.shape[1]).float()
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


class ModelEma(nn.Module):
    """Exponential moving average of weights and buffers, with timm's warm-up for short runs."""

    updates: torch.Tensor  # a buffer: the number of updates so far

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s weights (decay warmed up over the first updates)."""
        self.updates += 1
        n = float(self.updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        ema_state, state = self.module.state_dict(), model.state_dict()
        floating = [key for key, value in ema_state.items() if value.dtype.is_floating_point]
        torch._foreach_lerp_([ema_state[k] for k in floating],
                             [state[k].detach().to(ema_state[k].dtype) for k in floating], 1 - decay)
        for key, value in ema_state.items():
            if not value.dtype.is_floating_point:
                value.copy_(state[key])


@dataclass
class EpochStats:
    """One training epoch: mean loss, accuracy on the training batches, images seen and wall seconds."""

    loss: float
    accuracy: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        """Training throughput of the epoch."""
        return self.images / max(self.seconds, 1e-9)


def shard_batches(
    n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1,
    sample_weights: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """A seeded shuffle split across processes (as DistributedSampler), full batches only.

    With ``sample_weights`` an epoch is ``n`` draws with replacement in proportion to them
    (class-aware sampling) instead of a permutation.
    """
    if sample_weights is None:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.multinomial(sample_weights, n, replacement=True, generator=generator)
    per_rank = n // world_size
    mine = order[rank * per_rank : (rank + 1) * per_rank]
    for start in range(0, per_rank - batch_size + 1, batch_size):
        yield mine[start : start + batch_size]


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    preprocessing: Preprocessing,
    augment: AugmentConfig | None,
    label_mode: str,
    label_smoothing: float,
    batch_size: int,
    generator: torch.Generator,
    device_generator: torch.Generator,
    precision: str,
    ema: ModelEma | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    description: str = "train",
    sample_weights: torch.Tensor | None = None,
    logit_offset: torch.Tensor | None = None,
    progress_every: int = 25,
) -> EpochStats:
    """One pass over the (sharded) training set; images and targets already live on the device.

    ``generator`` (CPU) shuffles; ``device_generator`` drives augmentation and label sampling.
    ``logit_offset`` turns the loss into the logit-adjusted loss (``target_loss``). The progress
    bar's figures are read from the device every ``progress_every`` steps only.
    """
    model.train()
    device = images.device
    loss_of = partial(target_loss, mode=label_mode, label_smoothing=label_smoothing,
                      generator=device_generator, logit_offset=logit_offset)
    totals = RunningTotals(device)
    started = time.perf_counter()
    batches = list(shard_batches(len(images), batch_size, generator, rank, world_size, sample_weights))
    bar = tqdm(batches, desc=description, disable=not progress, leave=False, dynamic_ncols=True)
    for step, index in enumerate(bar):
        index = index.to(device)
        batch = make_batch(images[index], preprocessing, augment, device_generator)
        batch_targets = targets[index]
        logits, loss = train_step(model, optimizer, batch, batch_targets, loss_of, precision)
        scheduler.step()
        if ema is not None:
            ema.update(unwrap(model))
        totals.add(loss, logits if logit_offset is None else logits + logit_offset, batch_targets)
        if progress and step % progress_every == 0:
            bar.set_postfix(**totals.postfix(), lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return totals.stats(time.perf_counter() - started)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor, targets: torch.Tensor,
               loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (under ``precision``'s autocast), loss, backward and one optimizer step; the
    detached logits and loss."""
    with autocast(batch.device, precision):
        logits = model(batch.contiguous(memory_format=torch.channels_last))
    loss = loss_of(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits.detach(), loss.detach()


class RunningTotals:
    """An epoch's loss and top-1 hits, summed on the device: read only for the progress bar and
    once at the end, so the loop never waits for the device."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """A batch's mean ``loss``, its ``scores`` (N, C) and its ``targets`` (N, C; top class is the label)."""
        self.loss += loss.double() * len(targets)
        self.correct += (scores.argmax(1) == targets.argmax(1)).sum()
        self.seen += len(targets)

    def postfix(self) -> dict[str, str]:
        """The running means for a progress bar (a device sync)."""
        return {"loss": f"{self.loss.item() / self.seen:.3f}", "acc": f"{self.correct.item() / self.seen:.3f}"}

    def stats(self, seconds: float) -> EpochStats:
        """The epoch's means; FloatingPointError when the loss is no longer finite."""
        mean_loss = self.loss.item() / max(self.seen, 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss}")
        return EpochStats(mean_loss, self.correct.item() / max(self.seen, 1), self.seen, seconds)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: Preprocessing,
    precision: str = "fp32",
    batch_size: int = 256,
    logit_offset: torch.Tensor | None = None,
) -> np.ndarray:
    """Softmax probabilities (N, C) for uint8 faces on the model's device; ``logit_offset`` is
    added to the logits first (a logit-adjusted model's training prior, put back)."""
    model.eval()
    device = images.device
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = make_batch(images[start : start + batch_size], preprocessing)
        with autocast(device, precision):
            logits = model(batch.contiguous(memory_format=torch.channels_last)).float()
        if logit_offset is not None:
            logits = logits + logit_offset
        outputs.append(logits.softmax(dim=1).cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), np.float32)


def save_atomic(obj: object, path: str | Path) -> None:
    """torch.save through a hidden partial file (``outputs.written_whole``), so a kill never leaves
    half a checkpoint."""
    written_whole(path, lambda partial: torch.save(obj, partial))
