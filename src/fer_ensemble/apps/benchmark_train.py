"""``fer-ensemble benchmark-train``: training images per second per member, input size and
precision on this machine (the ``train`` extra), to plan a run."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from fer_ensemble.constants import MODEL_NAMES
from fer_ensemble.errors import json_text


def add_benchmark_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 96, 112])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    return parser


def run_benchmark_train(args: argparse.Namespace) -> int:
    import torch

    from fer_ensemble.training.benchmark import format_table, measure_all
    from fer_ensemble.training.train import machine_description, resolve_device

    device = resolve_device(args.device)
    rows = measure_all(args.models, args.sizes, args.precisions, args.batch_size, args.steps, args.warmup, device)
    if args.json:
        print(json_text([asdict(r) for r in rows]))
    else:
        print(f"Training throughput on {machine_description(device)}, torch {torch.__version__}")
        print(format_table(rows))
    return 0
