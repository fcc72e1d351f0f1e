#!/usr/bin/env python3
"""Print the accuracy tables of docs/accuracy.md from an ensemble file (default: the shipped one).

The FER+ tables come from ``ensemble.json`` and the member cards, which ``fer-ensemble export`` and
``fer-ensemble fit-ensemble`` wrote and which a CI test re-checks on the FER+ test set. With
``--data`` and ``--ckplus48`` it also runs the ensemble on FER+ Valid/Test and on CK+48 and prints
what each class-prior strength gives on each (the trade-off table of docs/accuracy.md); ``--json-out`` keeps
those figures for the CI test that re-checks them, and ``--tradeoff-json F`` prints the table from them:

    python scripts/results_table.py [ENSEMBLE] [--data FERPLUS_DIR --ckplus48 CKPLUS48_DIR [--json-out F]]
    python scripts/results_table.py --tradeoff-json benchmarks/results/prior-tradeoff.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE  # noqa: E402

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
RARE = ("anger", "disgust", "fear", "contempt")

ANCHORS = [
    ("FER+ paper, VGG13, majority / probability (best runs)", "84.9 / 85.4"),
    ("best from-scratch CNN we know of", "87.0 ± 0.4"),
    ("face-pretrained state of the art", "89.4-91.6"),
]


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def prior_tradeoff(path: Path, ferplus: Path, ckplus48: Path) -> list[dict]:
    """FER+ Valid/Test and CK+48 (per image and per sequence) for every strength in STRENGTHS."""
    from fer_ensemble.data import load_labelled
    from fer_ensemble.labelled import evaluate_labelled, read_labelled_images
    from fer_ensemble.media.images import read_image
    from fer_ensemble.metrics import evaluate_probabilities
    from fer_ensemble.prior import adjust_probabilities
    from fer_ensemble.runtime.ensemble import Ensemble

    ensemble = Ensemble.load(path)
    valid, test = load_labelled(ferplus, "valid"), load_labelled(ferplus, "test")
    ck = read_labelled_images(ckplus48 / "labels.csv", ckplus48 / "images", "subject,sequence",
                              ckplus48 / "sequences.csv")
    native = {  # under FER+'s prior; every strength is then exact arithmetic on these
        "valid": ensemble.predict_proba(valid.images, prior_strength=0.0),
        "test": ensemble.predict_proba(test.images, prior_strength=0.0),
        "ck": ensemble.predict_proba([read_image(p, gray=True) for p in ck.paths], prior_strength=0.0),
    }
    rows = []
    for strength in sorted({*STRENGTHS, ensemble.default_prior_strength}):
        adjust = lambda p, strength=strength: adjust_probabilities(p, ensemble.class_prior, strength)  # noqa: E731
        v = evaluate_probabilities(adjust(native["valid"]), valid.labels)
        t = evaluate_probabilities(adjust(native["test"]), test.labels)
        c = evaluate_labelled(adjust(native["ck"]), np.ones(len(ck), bool), ck)
        rows.append({
            "strength": strength, "default": strength == ensemble.default_prior_strength,
            "ferplus_valid": {"accuracy": v.accuracy, "macro_recall": v.macro_recall},
            "ferplus_test": {"accuracy": t.accuracy, "macro_recall": t.macro_recall,
                             "macro_recall_7class": t.macro_recall_7class,
                             "neutral_recall": t.per_class["neutral"].recall},
            "ckplus48_image": {"accuracy": c.per_image.accuracy, "macro_recall": c.per_image.macro_recall,
                               "neutral_share": c.per_image.predicted_share["neutral"]},
            "ckplus48_sequence": {"accuracy": c.per_group.accuracy, "macro_recall": c.per_group.macro_recall,
                                  "neutral_share": c.per_group.predicted_share["neutral"],
                                  "recall": {e: c.per_group.per_class[e]["recall"] for e in ensemble.classes
                                             if c.per_group.per_class[e]["support"]}},
        })
    return rows


def print_tradeoff(rows: list[dict]) -> None:
    print("| prior strength | FER+ test acc. | FER+ test macro recall (8 / 7 classes) | FER+ test neutral recall | "
          "CK+48 acc. per image / sequence | CK+48 macro recall per image / sequence | CK+48 sequences called neutral | "
          + " | ".join(f"CK+48 {e} (seq.)" for e in RARE) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(RARE))
    for r in rows:
        name = {0.0: "0 (`ferplus`)", 1.0: "1 (`uniform`)"}.get(r["strength"], f"{r['strength']:g}")
        name = f"**{name}, default**" if r["default"] else name
        t, ci, cs = r["ferplus_test"], r["ckplus48_image"], r["ckplus48_sequence"]
        print(f"| {name} | {pct(t['accuracy'])} | {pct(t['macro_recall'])} / {pct(t['macro_recall_7class'])} | "
              f"{pct(t['neutral_recall'])} | {pct(ci['accuracy'])} / {pct(cs['accuracy'])} | "
              f"{pct(ci['macro_recall'])} / {pct(cs['macro_recall'])} | {pct(cs['neutral_share'])} | "
              + " | ".join(pct(cs["recall"][e]) for e in RARE) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ensemble", nargs="?", default=str(SHIPPED_ENSEMBLE))
    parser.add_argument("--data", help="FER+ folder (with --ckplus48: the prior trade-off table)")
    parser.add_argument("--ckplus48", help="CK+48 folder (labels.csv, sequences.csv, images/)")
    parser.add_argument("--json-out", help="write the trade-off figures here")
    parser.add_argument("--tradeoff-json", help="print the trade-off table from figures written by --json-out")
    args = parser.parse_args()
    path = Path(args.ensemble)
    print_fer_tables(path)
    rows = None
    if args.data and args.ckplus48:
        rows = prior_tradeoff(path, Path(args.data), Path(args.ckplus48))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    elif args.tradeoff_json:
        rows = json.loads(Path(args.tradeoff_json).read_text())
    if rows is not None:
        print()
        print("What the class prior gives and costs (FER+ Test: official protocol; CK+48: classifier on "
              "the crops, no neutral faces in it, one vote per sequence = mean probabilities of its frames):")
        print_tradeoff(rows)
    return 0


def print_fer_tables(path: Path) -> None:
    config = json.loads(path.read_text())
    members = config["metrics"]["members"]
    print("| model | input | weights | ms/face | FER+ test acc. (3,137) | macro-F1 | 7-class acc. | ECE before → after T | valid acc. | training |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for entry in config["members"]:
        card = json.loads((path.parent / entry["card"]).read_text())
        m = members[card["name"]]
        training = card["training"]
        minutes = training["train_wall_seconds"] / 60
        print(f"| {card['name']} | {card['preprocessing']['input_size']} px | {entry['variant']}"
              f"{', flip' if entry['flip_tta'] else ''} | {m.get('ms_per_face', float('nan')):.1f} | "
              f"{pct(m['test']['accuracy'])} | "
              f"{pct(m['test']['macro_f1'])} | {pct(m['test']['accuracy_7class'])} | "
              f"{m['test_ece_before_temperature']:.3f} → {m['test']['ece']:.3f} | {pct(m['valid']['accuracy'])} | "
              f"best epoch {training['best_epoch']} of {training['args']['epochs']}, {minutes:.0f} min, "
              f"{training['machine']} |")
    ensemble = config["metrics"]["ensemble"]
    weights = ", ".join(f"{e['card'].removesuffix('.json')} {e['weight']:.2f}" for e in config["members"])
    ms = config.get("latency", {}).get("ms_per_face", float("nan"))
    print(f"| **ensemble** | | soft voting ({weights}) | {ms:.1f} | **{pct(ensemble['test']['accuracy'])}** | "
          f"{pct(ensemble['test']['macro_f1'])} | {pct(ensemble['test']['accuracy_7class'])} | "
          f"{ensemble['test']['ece']:.3f} | {pct(ensemble['valid']['accuracy'])} | |")
    for name, figure in ANCHORS:
        print(f"| {name} | | | | {figure} | | | | | |")
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


if __name__ == "__main__":
    sys.exit(main())
