"""``fer-ensemble adapt``: fit a calibration to your own labelled photos or crops, measured by
cross-validation first (``fer_ensemble.adapt``), and write it as an ensemble file that every command
and the API accept (``--ensemble DIR/ensemble.json``, or ``--calibration DIR/ensemble.json`` on top
of another ensemble)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from fer_ensemble.apps.common import add_prior_argument, bounded, warn
from fer_ensemble.apps.labelled_photos import (
    add_blendshapes_argument,
    add_labelled_photo_arguments,
    refuse_geometry_of_crops,
    said_unreadable,
)
from fer_ensemble.apps.reports import format_before_after
from fer_ensemble.errors import ExitCode, UserError, json_text
from fer_ensemble.labelled import (
    crop_probabilities,
    face_outputs,
    photo_probabilities,
    read_labelled_images,
)
from fer_ensemble.outputs import output_folder, write_whole
from fer_ensemble.runtime.calibration import Calibration
from fer_ensemble.runtime.detectors import create_detector
from fer_ensemble.runtime.ensemble import EnsembleSpec
from fer_ensemble.runtime.geometry import GeometryReader
from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE, load_ensemble


def add_adapt_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_labelled_photo_arguments(parser, "file,label CSV of your photos (or face crops with --crops)")
    parser.add_argument("--group-by", metavar="COLUMN",
                        help="keep each group (e.g. a person) on one side of every fold; strongly advised "
                             "when one person has several photos")
    parser.add_argument("--groups", metavar="CSV", help="a second CSV (with 'file') holding the --group-by column")
    parser.add_argument("--out", required=True, help="folder for the calibrated ensemble.json (created)")
    parser.add_argument("--ensemble", help="ensemble to calibrate (default: the shipped one)")
    add_prior_argument(parser, " (for the figures)")
    parser.add_argument("--folds", type=bounded(int, 2), default=5, help="cross-validation folds (default %(default)s)")
    add_blendshapes_argument(parser, "fit a part of the calibration with them, which apps run with --geometry "
                                     "read faces through (docs/evaluate.md)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def written_spec(base_path: Path, out: Path, calibration: Calibration) -> EnsembleSpec:
    """The base ensemble file's members, prior and resting-face spread (measured without the
    calibration), with ``calibration`` and without what ``fit-ensemble`` measured (``info``); member
    cards found from ``out`` (the shipped weights by name, so the file keeps working wherever it is
    moved)."""
    spec = EnsembleSpec.read(base_path)
    if base_path.resolve() == SHIPPED_ENSEMBLE.resolve() or spec.weights == "shipped":
        members, weights = spec.members, "shipped"
    else:
        folder = os.path.relpath(base_path.resolve().parent, out.resolve())
        members, weights = tuple(replace(m, card=str(Path(folder) / m.card)) for m in spec.members), None
    return replace(spec, members=members, weights=weights, calibration=calibration, info={})


def format_adapt_report(report, written: Path | None) -> str:
    more = [] if report.cv_after_plain is None else [("without blendshapes", report.cv_after_plain)]
    lines = format_before_after(
        f"adapt: {report.n_images} labelled images ({report.n_faces} with a face"
        + (f", {report.n_blendshapes} with blendshapes" if report.cv_after_plain is not None else "")
        + f"), {report.n_folds}-fold cross-validation{' by group' if report.grouped else ''}; chosen: {report.candidate}"
        + (f"; with the blendshapes: {report.blendshapes_candidate}" if report.blendshapes_candidate else ""),
        report.cv_before, report.cv_after, "images", *more)
    if report.unfitted:
        lines.append(f"  no labels for {', '.join(report.unfitted)}: those keep their uncalibrated answers")
    if written:
        lines.append(f"wrote {written}: use it with --ensemble {written} (or --calibration {written})")
    return "\n".join(lines)


def run_adapt(args: argparse.Namespace) -> int:
    from fer_ensemble.adapt import (  # needs the 'adapt' extra (scipy, scikit-learn)
        cross_validate,
        few_labels,
        fit_blendshapes_part,
        fit_calibration,
    )

    out = Path(args.out)
    target = out / "ensemble.json"
    if target.exists():
        raise UserError(f"{target} exists; choose another --out (adapt never overwrites a file)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    base_path = Path(args.ensemble) if args.ensemble else SHIPPED_ENSEMBLE
    # fitted on the members' vote, not on top of another calibration
    ensemble = load_ensemble(base_path).with_calibration(None)
    if ensemble.class_prior is None:
        raise UserError(f"{base_path}: its cards record no class prior, which a calibration needs")
    strength = ensemble.prior_strength(args.prior)
    refuse_geometry_of_crops(args)
    data = read_labelled_images(args.labels, args.images, args.group_by, args.groups)
    shapes = None
    if args.crops:
        probabilities, found = crop_probabilities(ensemble.native_probabilities, data), data.readable()
    elif args.geometry:
        probabilities, _, found, shapes = face_outputs(
            lambda faces: ensemble.read_faces(faces, embeddings=False), data,
            create_detector({"detector": args.detector}), args.margin, args.offset, geometry=GeometryReader())
    else:
        probabilities, found = photo_probabilities(ensemble.native_probabilities, data,
                                                   create_detector({"detector": args.detector}), args.margin, args.offset)
    code = said_unreadable(data)  # said before a refusal too
    if note := few_labels(data.labels[found], data.groups, args.folds):
        warn(note)
    try:
        report = cross_validate(probabilities, found, data.labels, data.groups, ensemble.class_prior, strength,
                                args.folds, blendshapes=shapes)
    except ValueError as error:
        raise UserError(str(error)) from None
    written = None
    if report.improves:
        faces = np.flatnonzero(found)
        calibration = fit_calibration(probabilities[faces], data.labels[faces], ensemble.class_prior, report.candidate)
        if shapes is not None and report.blendshapes_candidate is not None:
            calibration.blendshapes = fit_blendshapes_part(probabilities[faces], data.labels[faces],
                                                           ensemble.class_prior, report.blendshapes_candidate,
                                                           shapes[faces])
        calibration.about = {"fitted_on": f"{args.labels} ({report.n_faces} faces)", "candidate": str(report.candidate),
                             "blendshapes": None if calibration.blendshapes is None
                             else str(report.blendshapes_candidate),
                             **without_blendshapes(report),
                             "cv_before": summary(report.cv_before), "cv_after": summary(report.cv_after),
                             "unfitted": report.unfitted}
        output_folder(out)
        write_whole(target, json_text(written_spec(base_path, out, calibration).to_dict(), indent=1) + "\n")
        written = target
    if args.json:
        print(json_text({"labels": args.labels, "n_images": report.n_images, "n_faces": report.n_faces,
                         "folds": report.n_folds, "grouped": report.grouped, "candidate": str(report.candidate),
                         "blendshapes": None if report.blendshapes_candidate is None
                         else str(report.blendshapes_candidate), "faces_with_blendshapes": report.n_blendshapes,
                         **without_blendshapes(report),
                         "cv_before": summary(report.cv_before), "cv_after": summary(report.cv_after),
                         "unfitted": report.unfitted, "written": str(written) if written else None}))
    else:
        print(format_adapt_report(report, written))
    if written is None:
        warn("the calibration does not beat the uncalibrated ensemble in cross-validation (accuracy and "
             "macro recall); nothing written")
        return ExitCode.NOT_IMPROVED
    return code


def without_blendshapes(report) -> dict:
    """``{"cv_after_without_blendshapes": ...}`` with ``--geometry`` (the same folds read without them), else {}."""
    return {} if report.cv_after_plain is None else {"cv_after_without_blendshapes": summary(report.cv_after_plain)}


def summary(scores) -> dict:
    """``accuracy``, ``macro_recall`` and ``per_class`` recalls (classes with labels), as ``evaluate --json``."""
    return {"accuracy": scores.accuracy, "macro_recall": scores.macro_recall, "no_face": scores.no_face,
            "per_class": {e: v for e, v in scores.per_class.items() if v["support"]}}

