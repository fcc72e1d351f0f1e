"""``fer-ensemble benchmark --stills``: photos end to end (detection and classification, decode
excluded) under each detector preset, on one and two threads, and the faces each finds.

Portraits of several sizes are the bundled photo scaled; group photos are read from
``--group-photos`` and scored against ``--group-labels`` (hand-labelled face boxes: found, missed,
false positives; ``fer_ensemble.metrics.match_faces``). Every preset runs in the same process on
the same inputs, the previous stills preset first, so the table compares like with like.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.apps.common import median_ms
from fer_ensemble.media import SAMPLES
from fer_ensemble.metrics import DetectionCounts, match_faces, read_face_boxes
from fer_ensemble.runtime.blazeface import BLAZEFACE_DETECTION
from fer_ensemble.runtime.detection import STILL_DETECTION
from fer_ensemble.runtime.detectors import create_detector

PRESETS = {  # name: detector settings
    "previous stills (one 960 px scan)": {"detect_width": 960, "min_face": 32, "scale_factor": 1.15,
                                          "min_neighbors": 5, "coarse_side": 0},
    "stills (ladder)": dict(STILL_DETECTION),
    "stills + scans turned -25/+25 degrees": {**STILL_DETECTION, "rotations": (-25.0, 25.0)},
}
BLAZEFACE_PRESET = "BlazeFace (--detector blazeface)"


def presets(score_thresholds: list[float] | None = None) -> dict[str, dict]:
    """The Haar presets, then BlazeFace at each score threshold (default: its own)."""
    thresholds = score_thresholds or [BLAZEFACE_DETECTION["score_threshold"]]
    blazeface = {
        BLAZEFACE_PRESET + ("" if t == BLAZEFACE_DETECTION["score_threshold"] else f", --score-threshold {t}"):
            {"detector": "blazeface", **BLAZEFACE_DETECTION, "score_threshold": t}
        for t in thresholds
    }
    return {**PRESETS, **blazeface}
PORTRAIT_SIZES = [(480, 640), (562, 762), (1200, 1600), (3024, 4032)]  # width, height
DEFAULT_LABELS = Path("benchmarks") / "group-photo-faces.csv"
DEFAULT_PHOTOS = Path("..") / "shared" / "data" / "faces"


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
    return cv2.resize(cv2.imread(str(SAMPLES / "grace_hopper.jpg")), (width, height), interpolation=cv2.INTER_AREA)


def build(ensembles: dict, settings: dict, threads: int):
    """A recognizer with this detector, OpenCV and ONNX Runtime both held to ``threads``."""
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    cv2.setNumThreads(threads)
    return EmotionRecognizer(ensembles[threads], create_detector(settings, threads), smoothing=1.0)


def measure(args: argparse.Namespace) -> list[StillsRow]:
    inputs = [(f"portrait {w}x{h}", [portrait(w, h)], None) for w, h in PORTRAIT_SIZES]
    labels_path = Path(args.group_labels or DEFAULT_LABELS)
    photos_dir = Path(args.group_photos or DEFAULT_PHOTOS)
    if labels_path.is_file() and photos_dir.is_dir():
        labelled = read_face_boxes(labels_path)
        files = sorted(labelled)
        images = [cv2.imread(str(photos_dir / f)) for f in files]
        if all(image is not None for image in images):
            inputs.append((f"{len(files)} group photos ({sum(map(len, labelled.values()))} faces)", images,
                           [labelled[f] for f in files]))
    from fer_ensemble.runtime.recognizer import load_ensemble

    ensembles = {threads: load_ensemble(args.ensemble, threads) for threads in (1, 2)}
    rows = []
    for preset, settings in presets(args.score_thresholds).items():
        for name, images, truth in inputs:
            row = StillsRow(preset, name)
            for threads in (1, 2):
                recognizer = build(ensembles, settings, threads)
                ms = median_ms(lambda: [recognizer.predict(image) for image in images], args.repeat)  # noqa: B023
                row.ms_per_photo[threads] = ms / len(images)
            found = [[f.box for f in recognizer.predict(image)] for image in images]
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
    baseline = {row.photos: row for row in rows if row.preset == next(iter(PRESETS))}
    lines = ["| photos | preset | ms per photo, 1 thread | 2 threads | speed-up vs previous, 1 thread | "
             "faces found / missed / false positives |", "|---|---|---|---|---|---|"]
    for row in rows:
        faces = row.faces
        counts = (f"{faces['true_positives']} / {faces['misses']} / {faces['false_positives']}"
                  if "true_positives" in faces else f"{faces['found']} found")
        ratio = baseline[row.photos].ms_per_photo[1] / row.ms_per_photo[1]
        per_second = "" if "true_positives" not in faces else f" ({1000 / row.ms_per_photo[1]:.1f} photos/s)"
        lines.append(f"| {row.photos} | {row.preset} | {row.ms_per_photo[1]:.1f}{per_second} | "
                     f"{row.ms_per_photo[2]:.1f} | {ratio:.2f}x | {counts} |")
    return "\n".join(lines)
