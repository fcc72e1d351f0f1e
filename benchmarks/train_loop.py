#!/usr/bin/env python3
"""Images per second of the whole training loop (``train_one_epoch`` with EMA), not a bare step.

``fer-ensemble benchmark-train`` times one training step; the loop adds what runs around it:
reading the loss back, the accuracy count, the EMA update, the progress bar. This script times
``train_one_epoch`` itself on random faces, so two versions of the trainer can be compared in one
run on the same machine by pointing PYTHONPATH at each checkout's ``src``:

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before/src python benchmarks/train_loop.py --label before
    PYTHONPATH=src python benchmarks/train_loop.py --label after

It only uses arguments that every version of ``train_one_epoch`` takes.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fer_ensemble.models import create_model
from fer_ensemble.training.augment import AugmentConfig
from fer_ensemble.training.engine import ModelEma, train_one_epoch


def measure(model_name: str, size: int, batch: int, steps: int, precision: str, device: str) -> float:
    torch.manual_seed(0)
    dev = torch.device(device)
    model = create_model(model_name, input_size=size).to(dev, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ema = ModelEma(model, 0.999)
    images = torch.randint(0, 256, (batch * steps, 48, 48), dtype=torch.uint8, device=dev)
    targets = torch.softmax(torch.randn(batch * steps, 8, device=dev), dim=1)

    def epoch(seed: int) -> float:
        generator = torch.Generator().manual_seed(seed)
        device_generator = generator if dev.type == "cpu" else torch.Generator(dev).manual_seed(seed)
        started = time.perf_counter()
        train_one_epoch(model, optimizer, scheduler, images, targets, preprocessing=model.preprocessing,
                        augment=AugmentConfig(), label_mode="crossentropy", label_smoothing=0.1,
                        batch_size=batch, generator=generator, device_generator=device_generator,
                        precision=precision, ema=ema, progress=False)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return batch * steps / (time.perf_counter() - started)

    epoch(0)  # warm-up
    return max(epoch(1), epoch(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for name in args.models:
        rate = measure(name, args.size, args.batch_size, args.steps, args.precision, args.device)
        print(json.dumps({"label": args.label, "model": name, "input_size": args.size, "precision": args.precision,
                          "device": args.device, "images_per_second": round(rate, 1)}), flush=True)


if __name__ == "__main__":
    main()
