"""``fer-ensemble pack-data`` (a developer command): FER+'s splits in one compressed file, to carry
to a lent GPU machine that gets the repository but not the data set (``scripts/train_gpu.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_pack_data_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--data", required=True, help="FER+ folder")
    parser.add_argument("--out", required=True, help="output file, name ending in .npz.xz")
    parser.add_argument("--splits", nargs="+", choices=("train", "valid", "test"), default=["train", "valid"])
    return parser


def run_pack_data(args: argparse.Namespace) -> int:
    from fer_ensemble.data.ferplus import pack_splits

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, as --out folders are made
    path = pack_splits(args.data, args.out, tuple(args.splits))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); pass it as --data")
    return 0
