#!/usr/bin/env python3
"""Print the README's accuracy table from an ensemble file (default: the shipped one).

Every figure comes from ``ensemble.json`` and the member cards, which ``fer-ensemble export`` and
``fer-ensemble fit-ensemble`` wrote and which a CI test re-checks on the FER+ test set.

    python scripts/results_table.py [path/to/ensemble.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE  # noqa: E402

ANCHORS = [
    ("FER+ paper, VGG13, majority / probability (best runs)", "84.9 / 85.4"),
    ("best from-scratch CNN we know of", "87.0 ± 0.4"),
    ("face-pretrained state of the art", "89.4-91.6"),
]


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED_ENSEMBLE
    config = json.loads(path.read_text())
    members = config["metrics"]["members"]
    print("| model | input | weights | FER+ test acc. (3,137) | macro-F1 | 7-class acc. | ECE before → after T | valid acc. | training |")
    print("|---|---|---|---|---|---|---|---|---|")
    for entry in config["members"]:
        card = json.loads((path.parent / entry["card"]).read_text())
        m = members[card["name"]]
        training = card["training"]
        minutes = training["train_wall_seconds"] / 60
        print(f"| {card['name']} | {card['preprocessing']['input_size']} px | {entry['variant']}"
              f"{', flip' if entry['flip_tta'] else ''} | {pct(m['test']['accuracy'])} | "
              f"{pct(m['test']['macro_f1'])} | {pct(m['test']['accuracy_7class'])} | "
              f"{m['test_ece_before_temperature']:.3f} → {m['test']['ece']:.3f} | {pct(m['valid']['accuracy'])} | "
              f"{training['best_epoch']} of {training['args']['epochs']} epochs, {minutes:.0f} min, "
              f"{training['machine']} |")
    ensemble = config["metrics"]["ensemble"]
    weights = ", ".join(f"{e['card'].removesuffix('.json')} {e['weight']:.2f}" for e in config["members"])
    print(f"| **ensemble** | | soft voting ({weights}) | **{pct(ensemble['test']['accuracy'])}** | "
          f"{pct(ensemble['test']['macro_f1'])} | {pct(ensemble['test']['accuracy_7class'])} | "
          f"{ensemble['test']['ece']:.3f} | {pct(ensemble['valid']['accuracy'])} | |")
    for name, figure in ANCHORS:
        print(f"| {name} | | | {figure} | | | | | |")
    print()
    print("Per-class recall on FER+ test:")
    classes = config["classes"]
    print("| model | " + " | ".join(classes) + " |")
    print("|---|" + "---|" * len(classes))
    rows = [(name, m["test"]) for name, m in members.items()] + [("ensemble", ensemble["test"])]
    for name, report in rows:
        print(f"| {name} | " + " | ".join(pct(report["per_class"][c]["recall"]) for c in classes) + " |")
    print()
    print("Confusion matrix of the ensemble on FER+ test (rows: true emotion, columns: predicted;"
          " each member's is in ensemble.json):")
    print("| true \\ predicted | " + " | ".join(classes) + " |")
    print("|---|" + "---|" * len(classes))
    for name, row in zip(classes, ensemble["test"]["confusion"]):
        print(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
