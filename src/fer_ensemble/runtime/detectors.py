"""Face detectors by name, from typed options: ``HaarOptions`` and ``BlazeFaceOptions`` (one frozen
dataclass per detector, beside it, each with ``stills()`` / ``live()`` presets and ``from_dict`` for
the plain settings dicts that apps, the server and batch workers record and pass around:
``{"detector": "haar" | "blazeface", **settings}``; no name means ``DEFAULT_DETECTOR``). A key that
is not a setting of the named detector, another detector's setting included, is refused whatever its
value, as is a value of the wrong type or range: a ``SpecError`` of one line naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from fer_ensemble.errors import SpecError
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.blazeface import BlazeFaceDetector, BlazeFaceOptions
from fer_ensemble.runtime.deprecation import deprecated_attribute
from fer_ensemble.runtime.detection import (
    SECOND_LOOK,
    Box,
    DetectorOptions,
    FaceDetector,
    HaarFaceDetector,
    HaarOptions,
)

DETECTOR_NAMES = ("haar", "blazeface")
"""The detectors ``create_detector`` builds by name (``--detector``)."""
DEFAULT_DETECTOR = "blazeface"
"""The detector of every app and of ``EmotionRecognizer()``, decided by measurement (docs/detection.md,
"Finding faces": the user-cases, taiwan-posed, the group photos, the sample clip and the webcam
loop in one benchmark run). ``haar``, the OpenCV cascade of the system this project implements,
stays a first-class option."""
DETECTOR_HELP = ("blazeface: MediaPipe's BlazeFace (shipped in the package; finds turned, tilted, masked and "
                 "backlit faces; default); haar: OpenCV's frontal-face cascade, the detector of the system this "
                 "project implements")
"""The ``--detector`` option's help text."""


LOOK_SIDE = 128
"""The side in pixels of the picture of the second look, BlazeFace's own input size: the box a third
of it, one pass of the model."""


@dataclass
class SecondLook:
    """``detector``'s boxes that BlazeFace, looking again at each with its surroundings, scores
    ``threshold`` or more (a face probability in [0, 1)): a box that is not a face (a belt, a
    shuttle) gets no emotion. ``threads`` bounds BlazeFace's ONNX Runtime."""

    detector: FaceDetector
    threshold: float = SECOND_LOOK
    threads: int | None = None
    reads_colour: bool = True  # BlazeFace looks in colour; the wrapped detector gets what it reads
    _verifier: BlazeFaceDetector | None = field(default=None, repr=False)  # set by __post_init__

    def __post_init__(self) -> None:
        self._verifier = BlazeFaceDetector(score_threshold=min(self.threshold, 0.5), min_face=LOOK_SIDE // 4,
                                           relative_min_face=0.0, threads=self.threads, turned_scans="off")

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
        """The wrapped detector's boxes ``(x, y, w, h)`` (ints, pixels of ``image``, in its order:
        left to right) that score ``threshold`` or more (``score``). ``image``: an (H, W, 3) BGR or
        (H, W) gray uint8 array; the wrapped detector gets it gray unless it reads colour."""
        boxes = self.detector.detect(image if getattr(self.detector, "reads_colour", False) else to_gray(image))
        return [box for box in boxes if self.score(image, box) >= self.threshold]


DETECTOR_OPTIONS: dict[str, type[HaarOptions] | type[BlazeFaceOptions]] = {"haar": HaarOptions,
                                                                        "blazeface": BlazeFaceOptions}
"""Each detector name of ``DETECTOR_NAMES``: the options class of its settings."""


def detector_options(settings: DetectorOptions | Mapping[str, Any] | None = None) -> HaarOptions | BlazeFaceOptions:
    """The typed options of ``settings``: options as they are, or a plain dict read by the
    ``from_dict`` of the detector it names (``DEFAULT_DETECTOR`` when it names none; None: that
    detector's stills preset). SpecError, one line, for an unknown detector or a setting it does not take."""
    if isinstance(settings, (HaarOptions, BlazeFaceOptions)):
        return settings
    if isinstance(settings, DetectorOptions):  # another subclass: not a detector create_detector builds
        raise SpecError(f"unknown detector options {type(settings).__name__}")
    name = (settings or {}).get("detector", DEFAULT_DETECTOR)
    if name not in DETECTOR_OPTIONS:
        raise SpecError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
    return DETECTOR_OPTIONS[name].from_dict(settings)


def live_settings(settings: DetectorOptions | Mapping[str, Any] | None = None) -> dict:
    """The live-video preset of the detector ``settings`` names (the values `webcam` and `video`
    default to; ``for_live`` of its options): Haar's on a 240 px copy, or BlazeFace's one look at the
    whole frame, both for faces of ``LIVE_MIN_FACE`` px and more; as plain settings holding only
    what differs from the stills preset. SpecError as ``detector_options``."""
    return detector_options(settings).for_live().to_dict(defaults=False)


def create_detector(settings: DetectorOptions | Mapping[str, Any] | None = None, threads: int | None = None) -> FaceDetector:
    """The detector ``settings`` describe: ``HaarOptions`` / ``BlazeFaceOptions``, or plain settings
    (``{"detector": "haar" | "blazeface", **settings}``, checked by ``detector_options``: SpecError, one
    line, for an unknown detector, another detector's setting or a bad value); None: the default
    detector's stills preset. ``threads`` bounds BlazeFace's ONNX Runtime (Haar runs on OpenCV's
    threads, set with ``cv2.setNumThreads``). Haar's boxes get BlazeFace's second look
    (``SecondLook``) unless ``second_look`` is 0."""
    options = detector_options(settings)
    if isinstance(options, BlazeFaceOptions):
        return BlazeFaceDetector(options, threads=threads)
    haar = HaarFaceDetector(options)
    return SecondLook(haar, options.second_look, threads) if options.second_look else haar


def __getattr__(name: str) -> Any:
    """The deprecated names of the specs (``runtime.deprecation.DEPRECATED``), for one release."""
    return deprecated_attribute(__name__, name, {
        "HaarSpec": lambda: HaarOptions, "BlazeFaceSpec": lambda: BlazeFaceOptions,
        "DetectorSpec": lambda: DetectorOptions, "DETECTOR_SPECS": lambda: DETECTOR_OPTIONS,
        "detector_spec": lambda: detector_options})
