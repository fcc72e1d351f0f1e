"""``fer-ensemble import-weights`` (a developer command): the fp16 parts ``scripts/train_gpu.py``
wrote on a lent GPU machine, joined back into run folders that ``export`` takes (the ``train`` extra)."""

from __future__ import annotations

import argparse


def add_import_weights_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("folder", help="the folder the GPU script wrote")
    parser.add_argument("--out", required=True, help="where to write <model>/best.pt")
    return parser


def run_import_weights(args: argparse.Namespace) -> int:
    from fer_ensemble.training.gpu_weights import import_weights

    for run in import_weights(args.folder, args.out):
        print(f"wrote {run}/best.pt; export it with: fer-ensemble export {run} --out DIR")
    return 0
