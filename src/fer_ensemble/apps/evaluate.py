"""``fer-ensemble evaluate``: the official FER+ protocol, or any ``file,label`` CSV of photos or face
crops (``fer_ensemble.labelled``), on the shipped ensemble, an exported model or a checkpoint."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import numpy as np

from fer_ensemble import __version__
from fer_ensemble.apps.common import add_calibration_argument, add_prior_argument, bounded, warn
from fer_ensemble.apps.labelled_photos import (
    add_blendshapes_argument,
    add_labelled_photo_arguments,
    refuse_geometry_of_crops,
    said_unreadable,
)
from fer_ensemble.apps.reports import format_before_after, format_labelled_report, format_report
from fer_ensemble.constants import EMOTIONS
from fer_ensemble.data import load_labelled
from fer_ensemble.errors import UserError, json_text, read_json_object
from fer_ensemble.evaluate import evaluate_on_split, with_prior
from fer_ensemble.labelled import (
    LabelledImages,
    Scores,
    crop_probabilities,
    evaluate_labelled,
    face_outputs,
    photo_probabilities,
    read_labelled_images,
)
from fer_ensemble.metrics import plot_confusion
from fer_ensemble.outputs import (
    MANIFEST,
    check_apart,
    check_manifest,
    output_folder,
    recorded_args,
    write_manifest,
    write_whole,
)
from fer_ensemble.runtime import Ensemble, OnnxClassifier, load_ensemble
from fer_ensemble.runtime.detectors import create_detector
from fer_ensemble.runtime.ensemble import load_calibration
from fer_ensemble.runtime.geometry import GeometryReader
from fer_ensemble.runtime.profile import (
    ENROL_FRAMINGS,
    ProfileMap,
    blend,
    fitted_in_parallel,
    framed_with_blendshapes,
    require_fitting,
)
from fer_ensemble.runtime.recognizer import CALM_NEUTRAL, calm_faces


def load_predictor(path: str | Path | None):
    """An object with ``name`` and ``predict_proba``: the shipped ensemble (None), an ensemble
    file, an ONNX member (card or file) without torch, or a training run / checkpoint."""
    if path is None or (Path(path).suffix == ".json"
                        and "members" in read_json_object(path, "ensemble file or model card")):
        return load_ensemble(path)
    path = Path(path)
    if path.suffix in (".json", ".onnx"):
        return OnnxClassifier(path)
    if path.is_dir() and not (path / "best.pt").is_file():  # said before torch is asked for
        raise UserError(f"{path}: a folder without best.pt; give an ensemble file, a model card (.json), an "
                        ".onnx file or a training run's folder")
    from fer_ensemble.export import load_trained  # needs the 'train' extra (torch)

    return load_trained(path)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", nargs="?", default=None,
                        help="ensemble file, model card .json, .onnx file, run folder or .pt checkpoint "
                             "(default: the ensemble shipped in the package)")
    parser.add_argument("--data", help="FER+ folder: score a FER+ split (official majority protocol)")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    add_labelled_photo_arguments(parser, "file,label CSV of your own photos (or of face crops with --crops)",
                                 required=False)
    parser.add_argument("--group-by", metavar="COLUMN[,COLUMN]",
                        help="one vote per group of images with equal values (e.g. frames of one sequence)")
    parser.add_argument("--groups", metavar="CSV", help="a second CSV (with 'file') holding the --group-by columns")
    add_prior_argument(parser)
    add_calibration_argument(parser)
    resting = parser.add_argument_group("resting faces", "with --labels: each person's photos read relative to "
                                        "their resting face, before and after printed (docs/accuracy.md)")
    resting.add_argument("--resting-face", metavar="COLUMN",
                         help="within each group of COLUMN (a person), the photos labelled neutral are the "
                              "resting face, every other photo is scored")
    resting.add_argument("--calm-reference", action="store_true",
                         help="with --resting-face: each person's resting face is taken, as a video's automatic "
                              "one is (--auto-resting-face), from the photos the ensemble itself reads as neutral "
                              f"with p >= {CALM_NEUTRAL:g} (the labels are not used for it), and "
                              "every photo of the person is scored; a person with fewer than "
                              "--calm-photos such photos keeps plain answers")
    resting.add_argument("--calm-photos", type=bounded(int, 1), default=1, metavar="N",
                         help="with --calm-reference: calm photos a person needs for a resting face (default 1: "
                              "each photo is a moment of its own, where a video's five calm frames in a row are one)")
    profiles = parser.add_argument_group("personal profiles", "each person's own photos read through a profile of "
                                       "a few of their other photos (docs/accuracy.md)")
    profiles.add_argument("--enrol", type=bounded(int, 1), default=None, metavar="K",
                          help="labels, with --group-by PERSON: within each person, K photos per class are their "
                               "enrolment (a personal profile) and the rest are scored, before and after; "
                               "with --resting-face, the enrolled neutral photos are also the resting face")
    profiles.add_argument("--draws", type=bounded(int, 1), default=10, metavar="N",
                          help="with --enrol: random enrolments averaged (default 10)")
    profiles.add_argument("--seed", type=int, default=0, help="with --enrol: the draws' random seed")
    profiles.add_argument("--profile-map", choices=("auto", "none"), default="auto",
                          help="with --enrol: auto (default) folds in the shipped profile map, refitted without "
                               "each person when it was fitted on these very photos; none: each profile is "
                               "the person's own photos alone")
    add_blendshapes_argument(profiles, "enrol them with the embeddings, read as 'predict --geometry --profile' "
                                       "reads them (the shipped blendshape profile map folded in)",
                             when="with --enrol, photos")
    profiles.add_argument("--enrol-split", metavar="COLUMN=VALUE",
                          help="with --enrol: enrol only on photos whose COLUMN is VALUE (e.g. a session), score "
                               "the others (K per class drawn from them)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", help="folder for the confusion-matrix PNG and report JSON")
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    if (args.data is None) == (args.labels is None):
        raise UserError("give either --data FER+_FOLDER or --labels CSV")
    if args.calm_reference and not (args.labels and args.resting_face):
        raise UserError("--calm-reference needs --labels and --resting-face COLUMN")
    if args.calm_photos != 1 and not args.calm_reference:
        raise UserError("--calm-photos goes with --calm-reference")
    if args.enrol is not None and not (args.labels and args.group_by):
        raise UserError("--enrol needs --labels and --group-by PERSON (the column naming each person)")
    if args.enrol is None and (args.enrol_split or args.draws != 10 or args.seed != 0 or args.profile_map != "auto"
                               or args.geometry):
        raise UserError("--draws, --seed, --enrol-split, --profile-map and --geometry go with --enrol")
    refuse_geometry_of_crops(args)
    if args.enrol is not None and args.calm_reference:
        raise UserError("--enrol takes the resting face from the enrolled neutral photos, not --calm-reference")

    if args.out:  # before the evaluation, not after it; never among what it reads
        images = args.images or (Path(args.labels).parent if args.labels else None)
        check_apart(args.out, [str(p) for p in (args.data, images) if p], [p for p in (args.labels, args.groups) if p],
                    "labelled photos" if args.labels else "FER+ data")
        check_manifest(args.out, "evaluate")
    if args.model is not None and not Path(args.model).exists():  # the line load_ensemble says for --ensemble
        raise UserError(f"no {'ensemble file' if Path(args.model).suffix == '.json' else 'model'} at {args.model}")
    if args.labels:
        return _evaluate_labelled(args)
    if args.resting_face:
        raise UserError("--resting-face needs --labels (a CSV with a column naming each person)")
    predictor = calibrated(load_predictor(args.model), args.calibration)
    split = load_labelled(args.data, args.split, "majority")
    report = evaluate_on_split(with_prior(predictor, args.prior), split)
    result = {"model": str(args.model or "shipped ensemble"), "name": predictor.name, "split": args.split,
              "prior": args.prior, **report.to_dict()}
    if args.out:
        write_report(Path(args.out), f"{predictor.name}-{args.split}", result, args, [
            (report.confusion, "confusion", f"{predictor.name}, FER+ {args.split}: accuracy {report.accuracy:.4f}",
             "true (majority vote)")])
    print(json_text(result) if args.json else format_report(predictor.name, args.split, report))
    return 0


def file_stem(name: str) -> str:
    """``name`` as a file name: runs of anything but letters, digits, '.' and '_' become one '-'
    (an ensemble's name is "ensemble(resnet50+mobilenet_v2)")."""
    return re.sub(r"[^\w.]+", "-", name).strip("-")


def write_report(out: Path, stem: str, result: dict, args: argparse.Namespace, plots: list[tuple]) -> None:
    """``out/STEM.json`` first, then each (matrix, suffix, title, true-axis label) of ``plots`` as
    ``out/STEM-SUFFIX.png``, and the folder's manifest (``args``); without matplotlib the JSON is
    kept and one line says what is missing."""
    out = output_folder(out)
    write_manifest(out, "evaluate", recorded_args(args), __version__)
    stem = file_stem(stem)
    if f"{stem}.json" == MANIFEST:  # a model and labels file named so: the report keeps its own name
        stem += "-report"
    write_whole(out / f"{stem}.json", json_text(result, indent=2))
    if importlib.util.find_spec("matplotlib") is None:
        warn(f"wrote {out / stem}.json; the confusion-matrix PNGs need matplotlib: pip install 'fer-ensemble[plot]'")
        return
    for matrix, suffix, title, true_label in plots:
        plot_confusion(matrix, str(out / f"{stem}-{suffix}.png"), title, true_label=true_label)


def calibrated(predictor, calibration: str | None):
    """``predictor`` with the ``--calibration`` asked for (an ensemble only, given as a new one that
    shares its members; UserError otherwise)."""
    if calibration is None:
        return predictor
    if not isinstance(predictor, Ensemble):
        raise UserError("--calibration applies to an ensemble file, not to a single member")
    return predictor.with_calibration(load_calibration(calibration))


def _probabilities(args: argparse.Namespace, predict, data: LabelledImages) -> tuple[np.ndarray, np.ndarray]:
    if args.crops:
        return crop_probabilities(predict, data), data.readable()
    return photo_probabilities(predict, data, create_detector({"detector": args.detector}), args.margin, args.offset)


def _evaluate_labelled(args: argparse.Namespace) -> int:
    data = read_labelled_images(args.labels, args.images, args.group_by, args.groups)
    predictor = calibrated(load_predictor(args.model), args.calibration)
    if args.enrol is not None:
        return said_unreadable(data, _evaluate_enrol(args, predictor, data))
    if args.resting_face:
        return said_unreadable(data, _evaluate_resting_face(args, predictor, data))
    report = evaluate_labelled(*_probabilities(args, with_prior(predictor, args.prior), data), data)
    source = f"{args.labels} ({'face crops' if args.crops else f'photos, largest face, {args.detector} detector'})"
    result = {"model": str(args.model or "shipped ensemble"), "name": predictor.name, "labels": args.labels,
              "crops": args.crops, "detector": None if args.crops else args.detector, "group_by": args.group_by,
              "prior": args.prior, **report.to_dict()}
    if args.out:
        truth = {"image": f"true ({Path(args.labels).name})", "group": f"true (the label of each {args.group_by})"}
        write_report(Path(args.out), f"{predictor.name}-{Path(args.labels).stem}", result, args, [
            (scores.confusion, f"per-{view}-confusion",
             f"{predictor.name}, {Path(args.labels).name} per {view}: accuracy {scores.accuracy:.4f}, "
             f"macro recall {scores.macro_recall:.4f}", truth[view])
            for view, scores in (("image", report.per_image), ("group", report.per_group)) if scores is not None])
    print(json_text(result) if args.json else format_labelled_report(predictor.name, source, report))
    return said_unreadable(data)


def _evaluate_resting_face(args: argparse.Namespace, ensemble, data: LabelledImages) -> int:
    """Each person's neutral photos as their resting face, the other photos scored before and after;
    with ``--calm-reference``, the photos the ensemble reads as calm instead, every photo scored."""
    if not isinstance(ensemble, Ensemble):
        raise UserError("--resting-face needs an ensemble file (the shipped one by default), not a single member")
    ensemble.prior_strength(args.prior)
    person = read_labelled_images(args.labels, args.images, args.resting_face, args.groups).groups
    assert person is not None  # read with a group_by column (args.resting_face): one group per photo
    native, found = _probabilities(args, ensemble.native_probabilities, data)
    native[~found] = 1.0 / native.shape[1]  # no face: a placeholder, scored as wrong
    before = ensemble.answer(native, args.prior)
    if args.calm_reference:  # the automatic resting face's rule, labels unused
        reference_photos = found & calm_faces(ensemble.plain_answer(native, args.prior))
        scored_photos = found
    else:
        reference_photos = found & (data.labels == EMOTIONS.index("neutral"))
        scored_photos = found & ~reference_photos
    after = before.copy()
    people = sorted(set(person))
    without = []
    needed = args.calm_photos if args.calm_reference else 1
    for key in people:
        mine = np.array([p == key for p in person])
        if (mine & reference_photos).sum() < needed:
            without.append(key)
            continue
        scored = mine & scored_photos
        if scored.any():
            after[scored] = ensemble.answer(native[scored], args.prior,
                                            ensemble.resting_face(native[mine & reference_photos]))
    if args.calm_reference:  # as in a video: a face without a resting face keeps its plain answers, scored
        keep = np.arange(len(person))
    else:
        keep = np.flatnonzero(np.isin(person, [k for k in people if k not in without])
                              & (data.labels != EMOTIONS.index("neutral")))
    if len(keep) == 0:
        raise UserError(f"no photo to score: every {args.resting_face} needs "
                        + ("a photo read as calm" if args.calm_reference
                           else "neutral photos (its resting face) and other photos"))
    subset = LabelledImages([data.paths[i] for i in keep], data.labels[keep],
                            None if data.groups is None else [data.groups[i] for i in keep])
    report = evaluate_labelled(after[keep], found[keep], subset)
    uncalibrated = evaluate_labelled(before[keep], found[keep], subset)
    result = {"model": str(args.model or "shipped ensemble"), "name": ensemble.name, "labels": args.labels,
              "crops": args.crops, "detector": None if args.crops else args.detector, "prior": args.prior,
              "resting_face": args.resting_face, "reference": "calm" if args.calm_reference else "neutral",
              "calm_photos": args.calm_photos if args.calm_reference else None,
              "people": len(people) - len(without),
              "people_without_reference": without, **report.to_dict(), "uncalibrated": uncalibrated.to_dict()}
    if args.json:
        print(json_text(result))
    else:
        print(format_resting_report(ensemble.name, args, len(people) - len(without), without,
                                    uncalibrated.per_image, report.per_image))
    return 0


def enrol_split(args: argparse.Namespace, data: LabelledImages) -> np.ndarray | None:
    """--enrol-split COLUMN=VALUE: (N,) bool, the photos enrolment may draw from; None without it."""
    if not args.enrol_split:
        return None
    column, sep, value = args.enrol_split.partition("=")
    if not sep or not column:
        raise UserError(f"--enrol-split {args.enrol_split!r}: give COLUMN=VALUE, e.g. session=1")
    groups = read_labelled_images(args.labels, args.images, column, args.groups).groups
    assert groups is not None
    allowed = np.array([g == value for g in groups])
    if not allowed.any():
        raise UserError(f"--enrol-split: no photo has {column} = {value!r}")
    return allowed


def draw_enrolment(labels: np.ndarray, mine: np.ndarray, k: int, rng: np.random.Generator,
                   allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(enrolled, scored) masks within one person's photos ``mine``: k photos of each class drawn
    from those ``allowed`` (all: a class keeps at least one photo to score, so a class with k or
    fewer is not enrolled), and the person's other photos scored (with ``allowed``: those not
    allowed)."""
    enrolled = np.zeros(len(labels), bool)
    pool = mine if allowed is None else mine & allowed
    for c in np.unique(labels[pool]):
        idx = np.flatnonzero(pool & (labels == c))
        if len(idx) >= k + (allowed is None):
            enrolled[rng.choice(idx, k, replace=False)] = True
    return enrolled, mine & (~enrolled if allowed is None else ~allowed)


def _evaluate_enrol(args: argparse.Namespace, ensemble, data: LabelledImages) -> int:
    """Within each --group-by person, K photos per class enrolled as their profile and the others
    scored, without and with it, over --draws random enrolments (pooled)."""
    if not isinstance(ensemble, Ensemble):
        raise UserError("--enrol needs an ensemble file (the shipped one by default), not a single member")
    ensemble.require_embeddings()  # before any photo is read
    require_fitting()
    ensemble.prior_strength(args.prior)
    assert data.groups is not None  # read with --group-by: the person of each photo
    person = np.array(data.groups)
    allowed = enrol_split(args, data)
    detector = None if args.crops else create_detector({"detector": args.detector})
    native, embeddings, found, shapes = face_outputs(ensemble.read_faces, data, detector, args.margin, args.offset,
                                                     ENROL_FRAMINGS, GeometryReader() if args.geometry else None)
    native[~found] = 1.0 / native.shape[1]  # no face: a placeholder, scored as wrong; shapes: (N, 51) or None
    neutral = EMOTIONS.index("neutral")
    maps, map_use = profile_maps(args, ensemble.profile_map, data, embeddings, found)
    shape_maps: dict = {}
    if shapes is not None:
        read = found & np.isfinite(shapes).all(axis=1)
        shape_maps, _ = profile_maps(args, ensemble.blendshape_map, data, framed_with_blendshapes(embeddings, shapes),
                                     read)
    rng = np.random.default_rng(args.seed)
    draws = []  # (person, enrolled, scored) of every draw, drawn in order: the seed decides them all
    for _ in range(args.draws):
        for key in sorted(set(data.groups)):
            mine = person == key
            enrolled, scored = draw_enrolment(data.labels, mine & found, args.enrol, rng, allowed)
            unread = mine & ~found  # no face: scored, and counted wrong
            scored |= unread if allowed is None else unread & ~allowed
            if enrolled.any() and scored.any():
                draws.append((key, enrolled, scored))
    frames = embeddings.shape[1]
    profiles = fitted_in_parallel(lambda draw: ensemble.profile(
        embeddings[draw[1]].reshape(-1, embeddings.shape[2]), np.repeat(data.labels[draw[1]], frames),
        profile_map=maps.get(draw[0]), blendshape_map=shape_maps.get(draw[0]),
        blendshapes=None if shapes is None else np.repeat(shapes[draw[1]], frames, axis=0)), draws)
    picks, before, after, embeddings_only = [], [], [], []
    for (_, enrolled, scored), profile in zip(draws, profiles):
        resting = None
        if args.resting_face and (enrolled & (data.labels == neutral)).any():
            resting = ensemble.resting_face(native[enrolled & (data.labels == neutral)])
        index = np.flatnonzero(scored)
        picks.append(index)
        before.append(ensemble.answer(native[index], args.prior, resting,
                                      blendshapes=None if shapes is None else shapes[index]))
        after.append(np.where(found[index, None], blend(before[-1], embeddings[index, 0], profile,
                                                        None if shapes is None else shapes[index]), before[-1]))
        if shapes is not None:  # the same profiles read without the blendshapes: what they add
            embeddings_only.append(np.where(found[index, None], blend(before[-1], embeddings[index, 0], profile),
                                            before[-1]))
    if not picks:
        raise UserError(f"no photo to score: each {args.group_by} needs more than {args.enrol} photos of a class")
    keep = np.concatenate(picks)
    subset = LabelledImages([data.paths[i] for i in keep], data.labels[keep])
    report = evaluate_labelled(np.concatenate(after), found[keep], subset)
    unprofiled = evaluate_labelled(np.concatenate(before), found[keep], subset)
    without_shapes = evaluate_labelled(np.concatenate(embeddings_only), found[keep], subset) if embeddings_only else None
    result = {"model": str(args.model or "shipped ensemble"), "name": ensemble.name, "labels": args.labels,
              "crops": args.crops, "detector": None if args.crops else args.detector, "prior": args.prior,
              "group_by": args.group_by, "enrol": args.enrol, "draws": args.draws, "seed": args.seed,
              "enrol_split": args.enrol_split, "resting_face": args.resting_face, "profile_map": map_use,
              "geometry": args.geometry,
              "people": len(set(data.groups)), **report.to_dict(), "unprofiled": unprofiled.to_dict(),
              **({"embeddings_only": without_shapes.to_dict()} if without_shapes is not None else {})}
    if args.json:
        print(json_text(result))
    else:
        heading = (f"{ensemble.name} on {args.labels}: within each {args.group_by}, {args.enrol} photo(s) per class "
                   f"enrolled as their profile" + (" (their neutral ones also the resting face)" if args.resting_face else "")
                   + (" with their blendshapes" if args.geometry else "")
                   + f", the others scored; {args.draws} draw(s) pooled: {unprofiled.per_image.n} photos; "
                   + MAP_USES[map_use])
        more = [] if without_shapes is None else [("without blendshapes", without_shapes.per_image)]
        print("\n".join(format_before_after(heading, unprofiled.per_image, report.per_image, "photos", *more)))
    return 0


MAP_USES = {"shipped": "the shipped profile map folded in",
            "held-out": "the profile map's part that learnt from these photos refitted without each person",
            "none": "no profile map (each person's photos alone)"}


def profile_maps(args: argparse.Namespace, shipped: ProfileMap | None, data: LabelledImages, features: np.ndarray,
                 found: np.ndarray) -> tuple[dict, str]:
    """The profile map each person is enrolled with (by person; absent: none) and which kind
    (``MAP_USES``): the ensemble's ``shipped`` one, or, when one of its parts was fitted on
    ``args.labels`` itself, that part refitted on the (N, F, D) ``features`` of the photos ``found``
    without each person in turn, so nobody is scored with a map that learnt from their own photos."""
    shipped = shipped if args.profile_map == "auto" else None
    assert data.groups is not None  # read with --group-by
    people = sorted(set(data.groups))
    if shipped is None:
        return {}, "none"
    index = shipped.part_fitted_on(args.labels)
    if index is None:
        return {key: shipped for key in people}, "shipped"
    frames = features.shape[1]
    usable = np.repeat(found, frames)
    flat = features.reshape(-1, features.shape[2])[usable]
    labels, person = np.repeat(data.labels, frames)[usable], np.repeat(np.array(data.groups), frames)[usable]
    refits = fitted_in_parallel(lambda key: shipped.held_out(index, flat, labels, person, key), people)
    return dict(zip(people, refits)), "held-out"


def format_resting_report(name: str, args: argparse.Namespace, people: int, without: list[str],
                          before: Scores, after: Scores) -> str:
    lines = format_before_after(
        f"{name} on {args.labels}, each {args.resting_face}'s "
        + (f"calm photos (read neutral with p >= {CALM_NEUTRAL}, at least {args.calm_photos}) as the resting "
           "face, every photo read against it" if args.calm_reference else "neutral photos as the resting face")
        + f" ({people} with one{'; none for ' + ', '.join(without) if without else ''}"
        + ("; their photos keep plain answers" if args.calm_reference and without else "")
        + f"): {before.n} " + ("photos" if args.calm_reference else "other photos"),
        before, after, "photos")
    if before.no_face:
        lines.append(f"  no face found in {before.no_face} photos (counted as wrong)")
    return "\n".join(lines)
