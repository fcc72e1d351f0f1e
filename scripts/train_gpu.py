#!/usr/bin/env python3
"""Train both ensemble members on one GPU in one call; write fp16 weights in files of <= 16 MiB.

A lent GPU machine receives the repository but not the dataset: pack train + valid first
(~57 MB, lzma) into a folder that travels with the working tree, then on the GPU machine
(torch + torchvision installed; run from the repository root):

    fer-ensemble pack-data --data ../shared/data/ferplus --out .carry/ferplus.npz.xz   # here
    python scripts/train_gpu.py --data .carry/ferplus.npz.xz --out "$OUT" --input-size 224 --minutes 10

Each member's epochs are sized from a short throughput probe so that both fit the budget
(ResNet50 gets 70 %), unless --epochs fixes them. Back here, turn the files into exported models:

    fer-ensemble import-weights OUT_DIR --out runs/gpu
    fer-ensemble export runs/gpu/resnet50 --out models --data FERPLUS_DIR --int8
    fer-ensemble export runs/gpu/mobilenet_v2 --out models --data FERPLUS_DIR --int8

CPU smoke configuration (what the test runs):

    python scripts/train_gpu.py --data FERPLUS_DIR --out /tmp/gpu-out --device cpu \
        --input-size 32 --subset 256 --epochs 1 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.constants import MODEL_NAMES  # noqa: E402
from fer_ensemble.data import load_labelled  # noqa: E402
from fer_ensemble.training.benchmark import measure_training  # noqa: E402
from fer_ensemble.training.gpu_weights import save_fp16_parts  # noqa: E402
from fer_ensemble.training.options import add_train_arguments  # noqa: E402
from fer_ensemble.training.train import BEST, METRICS, resolve_device, run_training  # noqa: E402

BUDGET_SHARE = {"resnet50": 0.7, "mobilenet_v2": 0.3}


def plan_epochs(name: str, args: argparse.Namespace, train_images: int) -> int:
    """Epochs that fit this member's share of the budget, from a measured training rate."""
    if args.epochs:
        return args.epochs
    device = resolve_device(args.device)
    row = measure_training(name, args.input_size, "bf16", args.batch_size, steps=10, warmup=3,
                           device=device)
    epoch_seconds = train_images / row.images_per_second * 1.15  # + validation and checkpoints
    epochs = int(BUDGET_SHARE[name] * args.minutes * 60 // epoch_seconds)
    print(f"{name}: {row.images_per_second:.0f} img/s -> {epochs} epochs of ~{epoch_seconds:.0f} s",
          flush=True)
    return max(1, epochs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="folder for the fp16 parts and meta files")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget, both members")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs instead of the budget")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=["resnet50", "mobilenet_v2"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--label-mode", default="crossentropy")
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default=None, help="run folders (default: a temporary folder)")
    args = parser.parse_args()

    started = time.perf_counter()
    out = Path(args.out)
    runs = Path(args.runs or tempfile.mkdtemp(prefix="fer-gpu-runs-"))
    train_images = len(load_labelled(args.data, "train", args.label_mode).head(args.subset))
    summary = {}
    for name in args.models:
        epochs = plan_epochs(name, args, train_images)
        train_argv = [
            "--model", name, "--data", args.data, "--out", str(runs / name),
            "--input-size", str(args.input_size), "--epochs", str(epochs),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--label-mode", args.label_mode, "--device", args.device, "--no-progress",
        ]
        if args.subset:
            train_argv += ["--subset", str(args.subset)]
        run = run_training(add_train_arguments(argparse.ArgumentParser()).parse_args(train_argv))
        files = save_fp16_parts(run / BEST, out, run / METRICS)
        summary[name] = {"epochs": epochs, "files": [f.name for f in files]}
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
