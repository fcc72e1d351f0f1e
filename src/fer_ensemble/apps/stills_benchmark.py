"""``fer-ensemble benchmark --stills``: photos end to end (detection and classification, decode
excluded) under each detector preset, on one and two threads (``--threads N``: on N only), and the
faces each finds.

Portraits of several sizes are the bundled photo scaled, photos without a face plain grey; group
photos are read from ``--group-photos`` and scored against ``--group-labels`` (hand-labelled face
boxes: found, missed, false positives; ``fer_ensemble.metrics.match_faces``). Every preset runs in the same process on
the same inputs, the previous stills preset first, so the table compares like with like.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.apps.common import median_ms
from fer_ensemble.media.images import read_image
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.metrics import DetectionCounts, match_faces, read_face_boxes
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.blazeface import TURNED_SCANS, BlazeFaceOptions
from fer_ensemble.runtime.detection import EQUALIZATIONS, Box, HaarOptions
from fer_ensemble.runtime.detectors import create_detector

HAAR_BEFORE = HaarOptions.stills(detect_width=1280, equalize="global", ladder_window=30, second_look=0).to_dict()
"""The Haar stills ladder before its blind spots were fixed (global equalisation, a 30 px ladder
window, never finer than a 1280 px copy, no second look)."""
HAAR_PRESET = "Haar (--detector haar)"
PRESETS = {  # name: detector settings
    "Haar ladder before (global equalisation, 30 px window, 1280 px cap)": HAAR_BEFORE,
    HAAR_PRESET: HaarOptions.stills().to_dict(),
    "Haar + scans turned -25/+25 degrees": HaarOptions.stills(rotations=(-25.0, 25.0)).to_dict(),
}
EQUALISATION_PRESETS = {f"Haar, --equalize {name}": HaarOptions.stills(equalize=name).to_dict()
                        for name in ("global", "clahe")}
"""The checks only: what each equalisation of the scanned copy finds (``--equalize``)."""
BLAZEFACE_PRESET = "BlazeFace (default)"
USER_CASES = {"c07_sts106_crew_640.jpg": (7, 7), "c08_canvas_2048x1536.jpg": (1, 1), "c12_three_faces.jpg": (3, 3),
              "c13_backlit_astronaut.png": (1, 1), "c14_tilt_20.png": (1, 1), "c14_tilt_180.png": (0, 1),
              "c15_mask_astronaut.png": (1, 1)}
"""The photos of ``../shared/data/user-cases`` and the number of faces a user expects in each (its
README: least, most; c14_tilt_180: the face or nothing)."""
FACE_CENTRES = {"c14_tilt_180.png": (286, 396)}
"""Where the one face is, for a case where a box elsewhere is not a face (the upside-down
astronaut's face, x and y in pixels); a box counts there if its centre is within 60 px."""


def user_case_passed(name: str, boxes: list) -> bool:
    """Whether ``boxes`` found in the user-case photo ``name`` are what its README expects."""
    low, high = USER_CASES[name]
    centre = FACE_CENTRES.get(name)
    on_face = centre is None or all(abs(x + w / 2 - centre[0]) < 60 and abs(y + h / 2 - centre[1]) < 60
                                    for x, y, w, h in boxes)
    return low <= len(boxes) <= high and on_face


def turned_presets() -> dict[str, dict]:
    """BlazeFace's stills preset under each ``--turned-scans`` (its default: ``BLAZEFACE_PRESET``)."""
    return {BLAZEFACE_PRESET if turned == BlazeFaceOptions.stills().turned_scans else f"BlazeFace, --turned-scans {turned}":
            BlazeFaceOptions.stills(turned_scans=turned).to_dict() for turned in TURNED_SCANS}


def presets(score_thresholds: list[float] | None = None) -> dict[str, dict]:
    """The Haar presets, then BlazeFace under each ``--turned-scans``, and at each other score
    threshold of ``score_thresholds``."""
    blazeface = {
        f"{BLAZEFACE_PRESET}, --score-threshold {t}": BlazeFaceOptions.stills(score_threshold=t).to_dict()
        for t in score_thresholds or [] if t != BlazeFaceOptions.stills().score_threshold
    }
    return {**PRESETS, **turned_presets(), **blazeface}


PORTRAIT_SIZES = [(480, 640), (562, 762), (1200, 1600), (3024, 4032)]  # width, height
NO_FACE_SIZES = [(640, 480), (4032, 3024)]
"""Photos without a face, plain grey: BlazeFace reads its whole pyramid (what a tile holds does not
change its cost) and its turned scans when they fall back. For Haar they are a best case: a flat
picture is turned away at the cascade's first stage everywhere, where a real photo without a face
takes longer."""
DEFAULT_LABELS = Path("benchmarks") / "group-photo-faces.csv"
DEFAULT_PHOTOS = Path("..") / "shared" / "data" / "faces"
DEFAULT_USER_CASES = Path("..") / "shared" / "data" / "user-cases"
DEFAULT_TAIWAN = Path("..") / "shared" / "data" / "taiwan-posed"
TAIWAN_FALSE_BOXES = "false box, taiwan-posed ({photos} photos, held out)"
"""``turned_scores``' key for the boxes its turned scans add on taiwan-posed's photos: all false."""


@dataclass
class StillsRow:
    """One input under one preset."""

    preset: str
    photos: str
    ms_per_photo: dict[int, float] = field(default_factory=dict)  # threads -> median ms
    faces: dict = field(default_factory=dict)  # found / missed / false positives, or just found

    def to_dict(self) -> dict:
        return {"preset": self.preset, "photos": self.photos,
                "ms_per_photo": {str(k): round(v, 2) for k, v in self.ms_per_photo.items()}, "faces": self.faces}


def portrait(width: int, height: int) -> np.ndarray:
    """The bundled studio portrait scaled to ``width`` x ``height`` (its face scales with it)."""
    return cv2.resize(read_image(SAMPLES / "grace_hopper.jpg"), (width, height), interpolation=cv2.INTER_AREA)


def build(ensembles: dict, settings: dict, threads: int):
    """A recognizer with this detector, OpenCV and ONNX Runtime both held to ``threads``."""
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    cv2.setNumThreads(threads)
    return EmotionRecognizer(ensembles[threads], create_detector(settings, threads), ema_weight=1.0)


THREAD_COUNTS = (1, 2)
"""The thread counts each row is timed on, unless ``--threads`` names one."""


def thread_counts(args: argparse.Namespace) -> tuple[int, ...]:
    """``THREAD_COUNTS``, or the one count ``--threads`` gives (a shorter run, e.g. for a test)."""
    return THREAD_COUNTS if args.threads is None else (args.threads,)


def timed_answers(ensembles: dict, settings: dict, images: list[np.ndarray],
                  repeat: int) -> tuple[dict[int, float], list[list]]:
    """Median milliseconds per photo of ``images`` end to end on each thread count of ``ensembles``
    (``build``), and the faces of the last timed pass (no pass more to count them)."""
    ms_per_photo: dict[int, float] = {}
    answers: list[list] = []
    for threads in ensembles:
        recognizer = build(ensembles, settings, threads)

        def predict_all(recognizer=recognizer) -> None:
            answers[:] = [recognizer.predict(image) for image in images]

        ms_per_photo[threads] = median_ms(predict_all, repeat) / len(images)
    return ms_per_photo, answers


def missing_inputs(args: argparse.Namespace) -> list[str]:
    """One line for each input of ``benchmark --stills`` that is not where the options say (the
    defaults are relative to a checkout beside ``../shared``): its rows are left out, and the
    table must not look complete without them."""
    labels, photos = Path(args.group_labels or DEFAULT_LABELS), Path(args.group_photos or DEFAULT_PHOTOS)
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


def measure(args: argparse.Namespace) -> list[StillsRow]:
    inputs: list[tuple[str, list[np.ndarray], list[list[Box]] | None]] = [
        (f"portrait {w}x{h}", [portrait(w, h)], None) for w, h in PORTRAIT_SIZES]
    inputs += [(f"no face (plain grey) {w}x{h}", [np.full((h, w, 3), 128, np.uint8)], None) for w, h in NO_FACE_SIZES]
    labels_path = Path(args.group_labels or DEFAULT_LABELS)
    photos_dir = Path(args.group_photos or DEFAULT_PHOTOS)
    if labels_path.is_file() and photos_dir.is_dir():
        labelled = read_face_boxes(labels_path)
        files = sorted(labelled)
        photos = [image for image in (cv2.imread(str(photos_dir / f)) for f in files) if image is not None]
        if len(photos) == len(files):  # every one read
            inputs.append((f"{len(files)} group photos ({sum(map(len, labelled.values()))} faces)", photos,
                           [labelled[f] for f in files]))
    from fer_ensemble.runtime.recognizer import load_ensemble

    ensembles = {threads: load_ensemble(args.ensemble, threads) for threads in thread_counts(args)}
    rows = []
    for preset, settings in presets(args.score_thresholds).items():
        for name, images, truth in inputs:
            row = StillsRow(preset, name)
            row.ms_per_photo, answers = timed_answers(ensembles, settings, images, args.repeat)
            found = [[f.box for f in faces] for faces in answers]
            if truth is None:
                row.faces = {"found": sum(map(len, found))}
            else:
                total = DetectionCounts()
                for boxes, labelled_boxes in zip(found, truth):
                    total = total + match_faces(boxes, labelled_boxes)
                row.faces = total.to_dict()
            rows.append(row)
    cv2.setNumThreads(0)  # back to OpenCV's default
    return rows


def format_rows(rows: list[StillsRow]) -> str:
    """The speed table in Markdown: a column per thread count timed, the speed-up against
    ``--detector haar`` on the first."""
    baseline = {row.photos: row for row in rows if row.preset == HAAR_PRESET}
    first, *more = list(rows[0].ms_per_photo)
    on_first = f"{first} thread{'s' if first > 1 else ''}"
    timed = [f"ms per photo, {on_first}", *(f"{n} threads" for n in more)]
    lines = ["| photos | preset | " + " | ".join(timed) + f" | speed-up vs --detector haar, {on_first} | "
             "faces found / missed / false positives |", "|---" * (len(timed) + 4) + "|"]
    for row in rows:
        faces = row.faces
        counts = (f"{faces['true_positives']} / {faces['misses']} / {faces['false_positives']}"
                  if "true_positives" in faces else f"{faces['found']} found")
        ratio = baseline[row.photos].ms_per_photo[first] / row.ms_per_photo[first]
        per_second = "" if "true_positives" not in faces else f" ({1000 / row.ms_per_photo[first]:.1f} photos/s)"
        cells = [f"{row.ms_per_photo[first]:.1f}{per_second}", *(f"{row.ms_per_photo[n]:.1f}" for n in more)]
        lines.append(f"| {row.photos} | {row.preset} | " + " | ".join(cells) + f" | {ratio:.2f}x | {counts} |")
    return "\n".join(lines)


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
    for preset, settings in {**{name: s for name, s in PRESETS.items() if not s.get("rotations")},
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
    labels_path, photos_dir = Path(args.group_labels or DEFAULT_LABELS), Path(args.group_photos or DEFAULT_PHOTOS)
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
