"""Face detectors by name, from plain settings dicts (what apps, the server and batch workers pass
around): ``{"detector": "haar" | "blazeface", **keyword arguments}``; no name means
``DEFAULT_DETECTOR``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.detection import LIVE_DETECTION, Box, FaceDetector, HaarFaceDetector

if TYPE_CHECKING:
    from fer_ensemble.runtime.blazeface import BlazeFaceDetector

DETECTOR_NAMES = ("haar", "blazeface")
DEFAULT_DETECTOR = "blazeface"
"""The detector of every app and of ``EmotionRecognizer()``, decided by measurement (docs/detection.md,
"Finding faces": the user-cases, taiwan-posed, the group photos, the sample clip and the webcam
loop in one benchmark run). ``haar``, the OpenCV cascade of the system this project implements,
stays a first-class option."""
DETECTOR_HELP = ("blazeface: MediaPipe's BlazeFace (shipped in the package; finds turned, tilted, masked and "
                 "backlit faces; default); haar: OpenCV's frontal-face cascade, the detector of the system this "
                 "project implements")


SECOND_LOOK = 0.6
"""Haar's boxes are kept only where BlazeFace, shown the box with one box side of the photo around
it, scores a face at least this likely (``--second-look``; 0: off). On the five labelled group
photos the Haar ladder's false box (a belt) scores 0.56 and every face it finds 0.63 or more; the
user-cases' masked face scores 0.76, the shuttle box that other equalisations find in the
upside-down photo 0.0. Chosen there, like BlazeFace's own threshold: not a held-out figure."""


LOOK_SIDE = 128  # the second look's picture, BlazeFace's own input size: the box a third of it, one pass


@dataclass
class SecondLook:
    """``detector``'s boxes that BlazeFace, looking again at each with its surroundings, scores
    ``threshold`` or more: a box that is not a face (a belt, a shuttle) gets no emotion."""

    detector: FaceDetector
    threshold: float = SECOND_LOOK
    threads: int | None = None
    reads_colour: bool = True  # BlazeFace looks in colour; the wrapped detector gets what it reads
    _verifier: BlazeFaceDetector | None = field(default=None, repr=False)  # set by __post_init__

    def __post_init__(self) -> None:
        from fer_ensemble.runtime.blazeface import BlazeFaceDetector

        self._verifier = BlazeFaceDetector(score_threshold=min(self.threshold, 0.5), min_face=LOOK_SIDE // 4,
                                           relative_min_face=0.0, threads=self.threads)

    def score(self, image: np.ndarray, box: Box) -> float:
        """BlazeFace's best face probability in ``box`` grown by its side on every side (edge
        pixels beyond the photo), seen at ``LOOK_SIDE`` pixels (one look of the model)."""
        x, y, w, h = (int(v) for v in box)
        side = max(w, h, 1)
        height, width = image.shape[:2]
        left, top, right, bottom = x - side, y - side, x + w + side, y + h + side
        inside = image[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
        if inside.size == 0:  # a box wholly outside the photo
            return 0.0
        crop = cv2.copyMakeBorder(inside, max(-top, 0), max(bottom - height, 0), max(-left, 0),
                                  max(right - width, 0), cv2.BORDER_REPLICATE)
        crop = cv2.resize(crop, (LOOK_SIDE, LOOK_SIDE), interpolation=cv2.INTER_AREA if crop.shape[0] > LOOK_SIDE
                          else cv2.INTER_LINEAR)
        assert self._verifier is not None  # set by __post_init__
        return max((d.score for d in self._verifier.detections(crop)), default=0.0)

    def detect(self, image: np.ndarray) -> list[Box]:
        boxes = self.detector.detect(image if getattr(self.detector, "reads_colour", False) else to_gray(image))
        return [box for box in boxes if self.score(image, box) >= self.threshold]


def live_settings(settings: dict | None = None) -> dict:
    """The live-video preset of the detector ``settings`` name (the values `webcam` and `video`
    default to): Haar's on a 240 px copy, or BlazeFace's one look at the whole frame, both for
    faces of 80 px and more."""
    settings = settings or {}
    if settings.get("detector", DEFAULT_DETECTOR) == "blazeface":
        return {"detector": "blazeface", "min_face": LIVE_DETECTION["min_face"], "relative_min_face": 0.0,
                **{key: settings[key] for key in ("score_threshold",) if key in settings}}
    return {"detector": "haar", **LIVE_DETECTION, **{key: settings[key] for key in ("second_look", "equalize")
                                                     if key in settings}}


def create_detector(settings: dict | None = None, threads: int | None = None) -> FaceDetector:
    """The detector ``settings`` name; ``threads`` bounds BlazeFace's ONNX Runtime (Haar runs on
    OpenCV's threads, set with ``cv2.setNumThreads``). Haar's boxes get BlazeFace's second look
    (``SecondLook``) unless ``second_look`` is 0."""
    settings = dict(settings or {})
    name = settings.pop("detector", DEFAULT_DETECTOR)
    if name == "haar":
        second_look = settings.pop("second_look", SECOND_LOOK)
        haar = HaarFaceDetector(**settings)
        return SecondLook(haar, second_look, threads) if second_look else haar
    if name == "blazeface":
        from fer_ensemble.runtime.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(threads=threads, **settings)
    raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
