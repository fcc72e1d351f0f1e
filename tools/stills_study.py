"""What chose ``fer-ensemble benchmark --stills``' presets, and checks them where users report
failures: ``python -m tools.stills_study [--repeat 5]`` from the repository's root (a checkout
beside ``../shared``; not installed with the package).

It prints, in one run: the speed table of ``benchmark --stills`` with one more row, the Haar ladder
before its blind spots were fixed (``HAAR_BEFORE``), on the labelled group photos; what each
detector preset finds in the user-case photos, taiwan-posed end to end and the sample clip's frames
(``detector_checks``); BlazeFace's second-look scores of the Haar ladder's boxes
(``second_look_scores``, what ``SECOND_LOOK`` was chosen from) and the scores of the boxes the
turned scans add (``turned_scores``, what ``TURNED_SCORE_THRESHOLD`` was chosen from, then
taiwan-posed's, held out). Its inputs default to ``../shared`` beside the checkout; one that is
missing is named in a line before the tables, and its rows are left out.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.apps.common import add_recognizer_arguments, bounded
from fer_ensemble.apps.stills_benchmark import PRESETS, format_rows, measure, presets, turned_presets
from fer_ensemble.cli import answered
from fer_ensemble.errors import json_text
from fer_ensemble.media.images import read_image
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.metrics import match_faces, read_face_boxes
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.blazeface import TURNED_SCORE_THRESHOLD
from fer_ensemble.runtime.detection import EQUALIZATIONS, SECOND_LOOK, Box, HaarOptions
from fer_ensemble.runtime.detectors import create_detector

HAAR_BEFORE = HaarOptions.stills(detect_width=1280, equalize="global", ladder_window=30, second_look=0).to_dict()
"""The Haar stills ladder before its blind spots were fixed (global equalisation, a 30 px ladder
window, never finer than a 1280 px copy, no second look)."""
HAAR_BEFORE_PRESET = "Haar ladder before (global equalisation, 30 px window, 1280 px cap)"
STUDY_PRESETS = {HAAR_BEFORE_PRESET: HAAR_BEFORE, **PRESETS}
"""The speed table's Haar rows: the ladder before its fixes first, then ``benchmark --stills``' own."""
EQUALISATION_PRESETS = {f"Haar, --equalize {name}": HaarOptions.stills(equalize=name).to_dict()
                        for name in ("global", "clahe")}
"""The checks only: what each equalisation of the scanned copy finds (``--equalize``)."""
USER_CASES = {"c07_sts106_crew_640.jpg": (7, 7), "c08_canvas_2048x1536.jpg": (1, 1), "c12_three_faces.jpg": (3, 3),
              "c13_backlit_astronaut.png": (1, 1), "c14_tilt_20.png": (1, 1), "c14_tilt_180.png": (0, 1),
              "c15_mask_astronaut.png": (1, 1)}
"""The photos of ``../shared/data/user-cases`` and the number of faces a user expects in each (its
README: least, most; c14_tilt_180: the face or nothing)."""
FACE_CENTRES = {"c14_tilt_180.png": (286, 396)}
"""Where the one face is, for a case where a box elsewhere is not a face (the upside-down
astronaut's face, x and y in pixels); a box counts there if its centre is within 60 px."""
DEFAULT_LABELS = Path("benchmarks") / "group-photo-faces.csv"
DEFAULT_PHOTOS = Path("..") / "shared" / "data" / "faces"
DEFAULT_USER_CASES = Path("..") / "shared" / "data" / "user-cases"
DEFAULT_TAIWAN = Path("..") / "shared" / "data" / "taiwan-posed"
TAIWAN_FALSE_BOXES = "false box, taiwan-posed ({photos} photos, held out)"
"""``turned_scores``' key for the boxes its turned scans add on taiwan-posed's photos: all false."""


def user_case_passed(name: str, boxes: list) -> bool:
    """Whether ``boxes`` found in the user-case photo ``name`` are what its README expects."""
    low, high = USER_CASES[name]
    centre = FACE_CENTRES.get(name)
    on_face = centre is None or all(abs(x + w / 2 - centre[0]) < 60 and abs(y + h / 2 - centre[1]) < 60
                                    for x, y, w, h in boxes)
    return low <= len(boxes) <= high and on_face


def missing_inputs(args: argparse.Namespace) -> list[str]:
    """One line for each input that is not where the options say (the defaults are relative to a
    checkout beside ``../shared``): its rows are left out, and the table must not look complete
    without them."""
    labels, photos = Path(args.group_labels), Path(args.group_photos)
    needed = [(labels, "is_file", "the group photos' face boxes", "--group-labels"),
              (photos, "is_dir", "the group photos", "--group-photos"),
              (Path(args.user_cases), "is_dir", "the user-case photos", "--user-cases"),
              (Path(args.taiwan) / "labels.csv", "is_file", "taiwan-posed", "--taiwan")]
    lines = [f"{what}: not found at {path} (give {option}); their rows are left out"
             for path, test, what, option in needed if not getattr(path, test)()]
    if labels.is_file() and photos.is_dir():
        unread = [f for f in sorted(read_face_boxes(labels)) if cv2.imread(str(photos / f)) is None]
        if unread:
            lines.append(f"the group photos: {len(unread)} of them not readable in {photos} (e.g. {unread[0]}); "
                         "their row is left out")
    return lines


@dataclass
class DetectorChecks:
    """One detector preset on the checks a user meets (``benchmark --stills``): faces found in each
    user-case photo, taiwan-posed end to end (largest face of each photo), and the bundled clip's
    frames with a face under the preset's live settings."""

    preset: str
    user_cases: dict[str, list] = field(default_factory=dict)  # file -> boxes found
    taiwan_no_face: int | None = None  # None: taiwan-posed not found, not measured
    taiwan_accuracy: float | None = None
    taiwan_macro_recall: float | None = None
    clip_frames_with_face: int = 0
    clip_frames: int = 0

    @property
    def user_cases_passed(self) -> int:
        return sum(user_case_passed(name, boxes) for name, boxes in self.user_cases.items())

    def to_dict(self) -> dict:
        return {**self.__dict__, "user_cases_passed": self.user_cases_passed}


def live_variant(settings: dict) -> dict:
    """The live-video settings of a stills preset: its detector's live preset, same equalisation."""
    from fer_ensemble.runtime.detectors import live_settings

    live = live_settings({"detector": settings["detector"]})
    return {**live, "equalize": settings["equalize"]} if "equalize" in settings else live


def detector_checks(args: argparse.Namespace) -> list[DetectorChecks]:
    from fer_ensemble.labelled import evaluate_photos, read_labelled_images
    from fer_ensemble.media.video import VideoFrames
    from fer_ensemble.runtime.detection import FACE_FRAMING, detect_faces
    from fer_ensemble.runtime.recognizer import load_ensemble

    cases, taiwan = Path(args.user_cases), Path(args.taiwan)
    ensemble = load_ensemble(args.ensemble)
    taiwan_data = read_labelled_images(taiwan / "labels.csv", taiwan / "images") if taiwan.is_dir() else None
    frames = [frame for _, frame in VideoFrames(SAMPLES / "faces.mp4")]
    rows = []
    for preset, settings in {**{name: s for name, s in STUDY_PRESETS.items() if not s.get("rotations")},
                             **EQUALISATION_PRESETS, **turned_presets()}.items():
        row, detector = DetectorChecks(preset), create_detector(settings)
        for name in USER_CASES:
            if (cases / name).is_file():
                image = read_image(cases / name)
                boxes = detect_faces(detector, image, to_gray(image))
                row.user_cases[name] = [[int(v) for v in box] for box in boxes]
        if taiwan_data is not None:
            scores = evaluate_photos(ensemble.predict_proba, taiwan_data, detector, FACE_FRAMING["margin"],
                                     FACE_FRAMING["offset"]).per_image
            row.taiwan_no_face, row.taiwan_accuracy, row.taiwan_macro_recall = (
                scores.no_face, scores.accuracy, scores.macro_recall)
        live = create_detector(live_variant(settings))
        row.clip_frames = len(frames)
        row.clip_frames_with_face = sum(bool(detect_faces(live, f, to_gray(f))) for f in frames)
        rows.append(row)
    return rows


def case_label(name: str) -> str:
    """``c14_tilt_20.png`` -> ``c14 tilt 20 (1)``: the case and the faces expected."""
    low, high = USER_CASES[name]
    case = " ".join(name.split(".")[0].split("_")[:3]) if name.startswith("c14") else name.split("_")[0]
    return f"{case} ({low}{'' if low == high else f'-{high}'})"


def format_checks(rows: list[DetectorChecks]) -> str:
    names = [name for name in USER_CASES if any(name in r.user_cases for r in rows)]
    lines = ["| preset | " + " | ".join(map(case_label, names)) + " | user-cases passed | taiwan-posed no face | "
             "accuracy | macro recall | sample clip frames with a face |", "|---" * (len(names) + 6) + "|"]
    for r in rows:
        lines.append(f"| {r.preset} | " + " | ".join(str(len(r.user_cases[n])) + ("" if user_case_passed(n, r.user_cases[n])
                                                                                else " ✗") for n in names)
                     + f" | {r.user_cases_passed} of {len(names)} | " + (
                         "- | - | -" if r.taiwan_no_face is None or r.taiwan_accuracy is None
                         or r.taiwan_macro_recall is None else
                         f"{r.taiwan_no_face} | {100 * r.taiwan_accuracy:.1f} | {100 * r.taiwan_macro_recall:.1f}")
                     + f" | {r.clip_frames_with_face} of {r.clip_frames} |")
    return "\n".join(lines)


def scored_photos(args: argparse.Namespace) -> list[tuple[str, np.ndarray, list[Box] | None]]:
    """The photos whose boxes a score listing sorts, decoded once for all its passes: the labelled
    group photos (file name, BGR image, its labelled boxes), then the user-case photos (no boxes)."""
    labels_path, photos_dir = Path(args.group_labels), Path(args.group_photos)
    labelled = read_face_boxes(labels_path) if labels_path.is_file() else {}
    photos: list[tuple[str, Path, list[Box] | None]] = [(f, photos_dir / f, labelled[f]) for f in sorted(labelled)
                                                        if (photos_dir / f).is_file()]
    photos += [(f, Path(args.user_cases) / f, None) for f in USER_CASES if (Path(args.user_cases) / f).is_file()]
    return [(name, read_image(path), truth) for name, path, truth in photos]


def second_look_scores(args: argparse.Namespace) -> dict[str, list[float]]:
    """BlazeFace's second-look score (``SecondLook.score``) of every box the Haar ladder finds,
    without the second look, on the labelled group photos ("face" or "false box") and the user-cases
    ("user-case"), for each equalisation: what ``SECOND_LOOK`` was chosen from."""
    from fer_ensemble.runtime.detectors import SecondLook

    photos = scored_photos(args)
    scores: dict[str, list[float]] = {}
    for equalize in EQUALIZATIONS:
        look = SecondLook(create_detector(HaarOptions.stills(equalize=equalize, second_look=0)))
        for _, image, truth in photos:
            for box in look.detector.detect(to_gray(image)):
                kind = "user-case" if truth is None else ("face" if match_faces([box], truth).true_positives
                                                          else "false box")
                scores.setdefault(f"{kind}, --equalize {equalize}", []).append(round(look.score(image, box), 2))
    return {kind: sorted(values) for kind, values in scores.items()}


def turned_scores(args: argparse.Namespace) -> dict[str, list[float]]:
    """The face probability of every box BlazeFace's turned scans add to the upright scan's (at its
    own score threshold, not ``TURNED_SCORE_THRESHOLD``), on the labelled group photos ("face" or
    "false box") and the user-cases ("user-case", and "false box" where the case knows its face or
    expects none beside the ones found upright): what ``TURNED_SCORE_THRESHOLD`` was chosen from.
    Then, held out from that choice, taiwan-posed's photos when present (``TAIWAN_FALSE_BOXES``:
    each shows one upright performer, so every box added there is false; the list may be empty)."""
    from fer_ensemble.runtime.blazeface import BlazeFaceDetector, added_faces, as_haar

    detector = BlazeFaceDetector(turned_scans="off")

    def added(image: np.ndarray) -> list:
        upright = detector.detections(image)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return added_faces(upright, detector.turned_detections(rgb, upright, least=detector.options.score_threshold))

    scores: dict[str, list[float]] = {}
    for name, image, truth in scored_photos(args):
        for found in added(image):
            box = as_haar(found)
            if truth is not None:
                kind = "face" if match_faces([box], truth).true_positives else "false box"
            else:  # a case's faces are all found upright, but for the upside-down face
                kind = "user-case" if name in FACE_CENTRES and user_case_passed(name, [box]) else "false box"
            scores.setdefault(kind, []).append(round(found.score, 2))
    taiwan = Path(args.taiwan)
    if (taiwan / "labels.csv").is_file():
        from fer_ensemble.labelled import read_labelled_images

        photos = read_labelled_images(taiwan / "labels.csv", taiwan / "images").paths
        scores[TAIWAN_FALSE_BOXES.format(photos=len(photos))] = [
            round(found.score, 2) for path in photos for found in added(read_image(path))]
    return {kind: sorted(values) for kind, values in scores.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.stills_study", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--group-photos", metavar="DIR", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--group-labels", metavar="CSV", default=str(DEFAULT_LABELS))
    parser.add_argument("--score-thresholds", type=bounded(float, 0.0, 1.0, low_open=True, high_open=True),
                        nargs="+", metavar="T", help="BlazeFace rows at these score thresholds too")
    parser.add_argument("--user-cases", metavar="DIR", default=str(DEFAULT_USER_CASES))
    parser.add_argument("--taiwan", metavar="DIR", default=str(DEFAULT_TAIWAN))
    add_recognizer_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return answered("tools.stills_study", lambda: study(args))


def study(args: argparse.Namespace) -> None:
    """Measure and print what the module's docstring says, for the inputs ``args`` name."""
    missing = missing_inputs(args)
    for line in missing:  # said first: the table is shorter without them
        print(f"tools.stills_study: {line}", file=sys.stderr)
    group = argparse.Namespace(**vars(args))
    if any(line.startswith("the group photos") for line in missing):
        group.group_photos = group.group_labels = None  # their row left out
    rows = measure(group, presets(args.score_thresholds, STUDY_PRESETS))
    checks = detector_checks(args)
    looks = second_look_scores(args)
    turned = turned_scores(args)
    if args.json:
        print(json_text({"speed": [row.to_dict() for row in rows], "checks": [c.to_dict() for c in checks],
                         "second_look": looks, "turned_scans": turned}, indent=2))
        return
    print(f"photos end to end (decode excluded), {os.cpu_count()} CPU cores, median of {args.repeat} runs")
    print(format_rows(rows))
    print("\nwhat each detector finds where users report failures (faces found, expected in brackets)")
    print(format_checks(checks))
    print(f"\nBlazeFace's second look at the Haar ladder's boxes (scores, lowest first; kept from {SECOND_LOOK})")
    for kind, values in looks.items():
        print(f"- {kind}: " + ", ".join(f"{v:.2f}" for v in values))
    print("\nBlazeFace's turned scans: boxes they add to the upright scan's (scores, lowest first; kept from "
          f"{TURNED_SCORE_THRESHOLD})")
    for kind, values in turned.items():
        print(f"- {kind}: " + (", ".join(f"{v:.2f}" for v in values) or "none"))


if __name__ == "__main__":
    sys.exit(main())
