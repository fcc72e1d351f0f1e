"""``fer-ensemble benchmark --stills``: photos end to end (detection and classification, decode
excluded) under each detector preset a user can choose, on one and two threads (``--threads N``:
on N only), and the faces each finds.

Portraits of several sizes are the bundled photo scaled, photos without a face plain grey; group
photos, when named (``--group-photos DIR --group-labels CSV``: hand-labelled face boxes), are
scored against their boxes (found, missed, false positives; ``fer_ensemble.metrics.match_faces``).
Every preset runs in the same process on the same inputs, so the table compares like with like.
What chose the presets (the user-cases, taiwan-posed, the scores behind the thresholds, the Haar
ladder before its fixes) is the checkout's ``python -m tools.stills_study``, not installed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.apps.common import median_ms
from fer_ensemble.errors import UserError
from fer_ensemble.media.images import read_image
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.metrics import DetectionCounts, match_faces, read_face_boxes
from fer_ensemble.runtime.blazeface import TURNED_SCANS, BlazeFaceOptions
from fer_ensemble.runtime.detection import Box, HaarOptions
from fer_ensemble.runtime.detectors import create_detector

HAAR_PRESET = "Haar (--detector haar)"
PRESETS = {  # name: detector settings
    HAAR_PRESET: HaarOptions.stills().to_dict(),
    "Haar + scans turned -25/+25 degrees": HaarOptions.stills(rotations=(-25.0, 25.0)).to_dict(),
}
"""The Haar presets of the table (``--detector haar``, and with ``--rotations -25 25``)."""
BLAZEFACE_PRESET = "BlazeFace (default)"


def turned_presets() -> dict[str, dict]:
    """BlazeFace's stills preset under each ``--turned-scans`` (its default: ``BLAZEFACE_PRESET``)."""
    return {BLAZEFACE_PRESET if turned == BlazeFaceOptions.stills().turned_scans else f"BlazeFace, --turned-scans {turned}":
            BlazeFaceOptions.stills(turned_scans=turned).to_dict() for turned in TURNED_SCANS}


def presets(score_thresholds: list[float] | None = None, haar: dict[str, dict] = PRESETS) -> dict[str, dict]:
    """The ``haar`` presets, then BlazeFace under each ``--turned-scans``, and at each other score
    threshold of ``score_thresholds``."""
    blazeface = {
        f"{BLAZEFACE_PRESET}, --score-threshold {t}": BlazeFaceOptions.stills(score_threshold=t).to_dict()
        for t in score_thresholds or [] if t != BlazeFaceOptions.stills().score_threshold
    }
    return {**haar, **turned_presets(), **blazeface}


PORTRAIT_SIZES = [(480, 640), (562, 762), (1200, 1600), (3024, 4032)]  # width, height
NO_FACE_SIZES = [(640, 480), (4032, 3024)]
"""Photos without a face, plain grey: BlazeFace reads its whole pyramid (what a tile holds does not
change its cost) and its turned scans when they fall back. For Haar they are a best case: a flat
picture is turned away at the cascade's first stage everywhere, where a real photo without a face
takes longer."""


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


def group_photos(photos: str | Path | None, labels: str | Path | None) -> tuple[list[np.ndarray], list[list[Box]]]:
    """The labelled group photos (BGR) of the folder ``photos`` and their boxes from ``labels``
    (``read_face_boxes``), in file order; none when neither is given. UserError (one line, exit 2)
    when only one is given, or either is not there, or a photo it names cannot be read."""
    if photos is None and labels is None:
        return [], []
    if photos is None or labels is None:
        raise UserError("--group-photos DIR and --group-labels CSV go together (the photos and their face boxes)")
    if not Path(labels).is_file():
        raise UserError(f"--group-labels {labels}: no such file")
    if not Path(photos).is_dir():
        raise UserError(f"--group-photos {photos}: no such folder")
    labelled = read_face_boxes(Path(labels))
    files = sorted(labelled)
    images = [cv2.imread(str(Path(photos) / f)) for f in files]
    if unread := [f for f, image in zip(files, images) if image is None]:
        raise UserError(f"--group-photos {photos}: {len(unread)} of the photos {labels} names cannot be read "
                        f"(e.g. {unread[0]})")
    return [image for image in images if image is not None], [labelled[f] for f in files]


def measure(args: argparse.Namespace, chosen: dict[str, dict] | None = None) -> list[StillsRow]:
    """A ``StillsRow`` for each preset of ``chosen`` (default: ``presets(args.score_thresholds)``)
    and each input: the portraits, the photos without a face and, with ``--group-photos`` and
    ``--group-labels``, the group photos."""
    inputs: list[tuple[str, list[np.ndarray], list[list[Box]] | None]] = [
        (f"portrait {w}x{h}", [portrait(w, h)], None) for w, h in PORTRAIT_SIZES]
    inputs += [(f"no face (plain grey) {w}x{h}", [np.full((h, w, 3), 128, np.uint8)], None) for w, h in NO_FACE_SIZES]
    photos, truth = group_photos(args.group_photos, args.group_labels)
    if photos:
        inputs.append((f"{len(photos)} group photos ({sum(map(len, truth))} faces)", photos, truth))
    from fer_ensemble.runtime.recognizer import load_ensemble

    ensembles = {threads: load_ensemble(args.ensemble, threads) for threads in thread_counts(args)}
    rows = []
    for preset, settings in (chosen or presets(args.score_thresholds)).items():
        for name, images, labelled in inputs:
            row = StillsRow(preset, name)
            row.ms_per_photo, answers = timed_answers(ensembles, settings, images, args.repeat)
            found = [[f.box for f in faces] for faces in answers]
            if labelled is None:
                row.faces = {"found": sum(map(len, found))}
            else:
                total = DetectionCounts()
                for boxes, labelled_boxes in zip(found, labelled):
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
