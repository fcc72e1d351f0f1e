#!/usr/bin/env python3
"""Give already exported members their ``embedding`` output (``fer_ensemble.export.add_embedding_output``)
and record its size in their model cards: what made the shipped int8 files of 2026-12-06 carry one
without retraining. ``logits`` stay bit-identical (the output is an Identity on the Flatten that feeds
the classifier); ``fer-ensemble export`` adds it to every new export itself.

    python scripts/add_embedding_output.py src/fer_ensemble/weights/resnet50.json src/fer_ensemble/weights/mobilenet_v2.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.export import EMBEDDING_OUTPUT, add_embedding_output  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="+", type=Path, help="model cards (.json) whose ONNX files to extend")
    for card_path in parser.parse_args().cards:
        card = json.loads(card_path.read_text())
        sizes = {add_embedding_output(card_path.with_name(file)) for file in card["files"].values()}
        card["output"]["embedding"] = {"name": EMBEDDING_OUTPUT, "size": sizes.pop()}
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"{card_path}: embedding of {card['output']['embedding']['size']} in {', '.join(card['files'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
