"""``fer-ensemble evaluate``: the official FER+ protocol, or any ``file,label`` CSV of photos or face
crops (``fer_ensemble.labelled``), on the shipped ensemble, an exported model or a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_ensemble.apps.common import PRIOR_HELP, bounded, prior_argument
from fer_ensemble.data import load_labelled
from fer_ensemble.errors import UserError, read_json_object
from fer_ensemble.evaluate import evaluate_on_split, format_report, with_prior
from fer_ensemble.labelled import evaluate_crops, evaluate_photos, format_labelled_report, read_labelled_images
from fer_ensemble.metrics import plot_confusion
from fer_ensemble.runtime import OnnxClassifier, load_ensemble
from fer_ensemble.runtime.detection import FACE_FRAMING
from fer_ensemble.runtime.detectors import DETECTOR_NAMES, create_detector


def load_predictor(path: str | Path | None):
    """An object with ``name`` and ``predict_proba``: the shipped ensemble (None), an ensemble
    file, an ONNX member (card or file) without torch, or a training run / checkpoint."""
    if path is None or (Path(path).suffix == ".json"
                        and "members" in read_json_object(path, "ensemble file or model card")):
        return load_ensemble(path)
    path = Path(path)
    if path.suffix in (".json", ".onnx"):
        return OnnxClassifier(path)
    from fer_ensemble.export import load_trained  # needs the 'train' extra (torch)

    return load_trained(path)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", nargs="?", default=None,
                        help="ensemble file, model card .json, .onnx file, run folder or .pt checkpoint "
                             "(default: the ensemble shipped in the package)")
    parser.add_argument("--data", help="FER+ folder: score a FER+ split (official majority protocol)")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--labels", help="file,label CSV of your own photos (or of face crops with --crops)")
    parser.add_argument("--images", help="folder the CSV's files are relative to (default: the CSV's folder)")
    parser.add_argument("--crops", action="store_true",
                        help="the images are face crops: classify them whole, no detector")
    parser.add_argument("--group-by", metavar="COLUMN[,COLUMN]",
                        help="one vote per group of images with equal values (e.g. frames of one sequence)")
    parser.add_argument("--groups", metavar="CSV", help="a second CSV (with 'file') holding the --group-by columns")
    parser.add_argument("--margin", type=bounded(float, -0.25, 1.0), default=FACE_FRAMING["margin"],
                        help="photos: crop margin")
    parser.add_argument("--offset", type=bounded(float, -0.5, 0.5), default=FACE_FRAMING["offset"],
                        help="photos: crop offset")
    parser.add_argument("--detector", choices=DETECTOR_NAMES, default="haar",
                        help="photos: the face detector (default %(default)s, its stills preset)")
    parser.add_argument("--prior", type=prior_argument, default=None, help=PRIOR_HELP)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", help="folder for the confusion-matrix PNG and report JSON")
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    if (args.data is None) == (args.labels is None):
        raise UserError("give either --data FER+_FOLDER or --labels CSV")
    if args.model is not None and not Path(args.model).exists():
        raise FileNotFoundError(f"no model at {args.model}")
    if args.labels:
        return _evaluate_labelled(args)
    predictor = load_predictor(args.model)
    split = load_labelled(args.data, args.split, "majority")
    report = evaluate_on_split(with_prior(predictor, args.prior), split)
    result = {"model": str(args.model or "shipped ensemble"), "name": predictor.name, "split": args.split,
              "prior": args.prior, **report.to_dict()}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{predictor.name}-{args.split}"
        plot_confusion(report.confusion, str(out / f"{stem}-confusion.png"),
                       f"{predictor.name}, FER+ {args.split}: accuracy {report.accuracy:.4f}")
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result) if args.json else format_report(predictor.name, args.split, report))
    return 0


def _evaluate_labelled(args: argparse.Namespace) -> int:
    data = read_labelled_images(args.labels, args.images, args.group_by, args.groups)
    predictor = load_predictor(args.model)
    predict = with_prior(predictor, args.prior)
    if args.crops:
        report = evaluate_crops(predict, data)
    else:
        detector = create_detector({"detector": args.detector})
        report = evaluate_photos(predict, data, detector, args.margin, args.offset)
    source = f"{args.labels} ({'face crops' if args.crops else f'photos, largest face, {args.detector} detector'})"
    result = {"model": str(args.model or "shipped ensemble"), "name": predictor.name, "labels": args.labels,
              "crops": args.crops, "detector": None if args.crops else args.detector, "group_by": args.group_by,
              "prior": args.prior, **report.to_dict()}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{predictor.name}-{Path(args.labels).stem}"
        for view, scores in (("image", report.per_image), ("group", report.per_group)):
            if scores is not None:
                plot_confusion(scores.confusion, str(out / f"{stem}-per-{view}-confusion.png"),
                               f"{predictor.name}, {Path(args.labels).name} per {view}: "
                               f"accuracy {scores.accuracy:.4f}, macro recall {scores.macro_recall:.4f}")
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result) if args.json else format_labelled_report(predictor.name, source, report))
    return 0
