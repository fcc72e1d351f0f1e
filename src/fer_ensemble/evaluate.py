"""``fer-ensemble evaluate``: the official FER+ protocol on a checkpoint or an exported model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.data import LabelledSplit, load_labelled
from fer_ensemble.metrics import EvaluationReport, evaluate_probabilities, plot_confusion

ProbabilityFn = Callable[[np.ndarray], np.ndarray]


def evaluate_on_split(predict_proba: ProbabilityFn, split: LabelledSplit) -> EvaluationReport:
    """Score ``predict_proba`` on a split's images against its majority labels."""
    if split.mode != "majority":
        raise ValueError("evaluation uses the majority labels; load the split with mode='majority'")
    return evaluate_probabilities(predict_proba(split.images), split.labels)


def load_predictor(path: str | Path | None):
    """An object with ``name`` and ``predict_proba``: the shipped ensemble (None), an ensemble
    file, an ONNX member (card or file) without torch, or a training run / checkpoint."""
    if path is None or (Path(path).suffix == ".json" and "members" in json.loads(Path(path).read_text())):
        from fer_ensemble.runtime.recognizer import load_ensemble

        return load_ensemble(path)
    path = Path(path)
    if path.suffix in (".json", ".onnx"):
        from fer_ensemble.runtime import OnnxClassifier

        return OnnxClassifier(path)
    from fer_ensemble.export import load_trained  # needs the 'train' extra (torch)

    return load_trained(path)


def format_report(name: str, split: str, report: EvaluationReport) -> str:
    lines = [
        f"{name} on FER+ {split} ({report.n_images} images, official majority protocol)",
        f"  accuracy {report.accuracy:.4f}   macro-F1 {report.macro_f1:.4f}   "
        f"7-class accuracy {report.accuracy_7class:.4f} ({report.n_images_7class} images)   "
        f"ECE {report.ece:.4f}   NLL {report.nll:.4f}",
        f"  {'class':<10} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}",
    ]
    for emotion in EMOTIONS:
        m = report.per_class[emotion]
        lines.append(f"  {emotion:<10} {m.precision:>9.3f} {m.recall:>7.3f} {m.f1:>6.3f} {m.support:>8d}")
    return "\n".join(lines)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", nargs="?", default=None,
                        help="ensemble file, model card .json, .onnx file, run folder or .pt checkpoint "
                             "(default: the ensemble shipped in the package)")
    parser.add_argument("--data", required=True, help="FER+ folder")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", help="folder for the confusion-matrix PNG and report JSON")
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    predictor = load_predictor(args.model)
    split = load_labelled(args.data, args.split, "majority")
    report = evaluate_on_split(predictor.predict_proba, split)
    result = {"model": str(args.model or "shipped ensemble"), "name": predictor.name, "split": args.split, **report.to_dict()}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{predictor.name}-{args.split}"
        plot_confusion(report.confusion, str(out / f"{stem}-confusion.png"),
                       f"{predictor.name}, FER+ {args.split}: accuracy {report.accuracy:.4f}")
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result) if args.json else format_report(predictor.name, args.split, report))
    return 0
