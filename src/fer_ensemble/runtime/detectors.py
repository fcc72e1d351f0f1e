"""Face detectors by name, from typed settings: ``HaarSpec`` and ``BlazeFaceSpec``, one dataclass
per detector, each with ``from_dict`` for the plain settings dicts that apps, the server and batch
workers pass around (``{"detector": "haar" | "blazeface", **settings}``; no name means
``DEFAULT_DETECTOR``). A key that is not a setting of the named detector, another detector's
setting included, is refused whatever its value, as is a value of the wrong type or range: a
``SpecError`` of one line naming the key."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from fer_ensemble.errors import SpecError
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.blazeface import (
    BLAZEFACE_DETECTION,
    BLAZEFACE_FILE,
    TURNED_SCANS,
    UPSIDE_DOWN_CHECK,
    BlazeFaceDetector,
)
from fer_ensemble.runtime.detection import (
    EQUALIZATIONS,
    LADDER_WINDOW,
    LIVE_DETECTION,
    STILL_DETECTION,
    Box,
    FaceDetector,
    HaarFaceDetector,
    haar_cascade_path,
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


SECOND_LOOK = 0.6
"""Haar's boxes are kept only where BlazeFace, shown the box with one box side of the photo around
it, scores a face at least this likely (``--second-look``; 0: off). On the five labelled group
photos the Haar ladder's false box (a belt) scores 0.56 and every face it finds 0.63 or more; the
user-cases' masked face scores 0.76, the shuttle box that other equalisations find in the
upside-down photo 0.0. Chosen there, like BlazeFace's own threshold: not a held-out figure."""


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
        from fer_ensemble.runtime.blazeface import BlazeFaceDetector

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


def _setting(spec: type[_Spec], key: str, value: object, kind: Any) -> Any:
    """``value`` as the setting ``key`` of the detector ``spec`` takes it (``kind``: int, float,
    str or tuple of floats); SpecError, one line, otherwise."""
    where = f"{spec.name} setting {key}"
    if kind == "tuple[float, ...]":
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list of numbers (degrees), not {value!r}")
        return tuple(_setting(spec, key, v, "float") for v in value)
    if kind == "str":
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a string, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise SpecError(f"{where} must be a number, not {value!r}")
    if kind == "int":
        if value != int(value):
            raise SpecError(f"{where} must be a whole number of pixels, not {value!r}")
        return int(value)
    return float(value)


class _Spec:
    """What ``HaarSpec`` and ``BlazeFaceSpec`` share: reading and writing plain dicts."""

    name: ClassVar[str]
    bounds: ClassVar[dict[str, tuple[float, float | None, str]]]  # key: (low, high, "[]", "(]", "[)" or "()")

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None = None):
        """The spec of plain ``settings`` (``{"detector": name, **settings}``; ``detector`` may be
        left out): each key a setting of this detector, of the right type and range, the others
        at the preset's values. Raises SpecError (a UserError, exit code 2), one line naming the
        key: another detector's name, another detector's setting (whatever its value), an unknown
        key, a value of the wrong type or out of range."""
        settings = dict(settings or {})
        name = settings.pop("detector", cls.name)
        if name != cls.name:
            raise SpecError(f"{cls.__name__} reads the settings of {cls.name}, not of the detector {name!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in settings:
            if key in fields:
                continue
            owners = [spec.name for spec in DETECTOR_SPECS.values()
                      if spec is not cls and key in {f.name for f in dataclasses.fields(spec)}]
            if owners:
                raise SpecError(f"{key} is a setting of the {' and '.join(owners)} detector, not of {cls.name}")
            raise SpecError(f"unknown {cls.name} setting {key!r} (it takes {', '.join(fields)})")
        values = {key: _setting(cls, key, value, fields[key].type) for key, value in settings.items()}
        return cls(**values)

    def __post_init__(self) -> None:
        for key, (low, high, interval) in self.bounds.items():
            value = getattr(self, key)
            below = value < low or (interval[0] == "(" and value == low)
            above = high is not None and (value > high or (interval[1] == ")" and value == high))
            if below or above:
                upper = "inf" if high is None else f"{high:g}"
                raise SpecError(f"{self.name} setting {key} must lie in {interval[0]}{low:g}, {upper}{interval[1]}, "
                                f"not {value!r}")

    def to_dict(self, defaults: bool = True) -> dict[str, Any]:
        """The plain settings ``from_dict`` reads back: ``{"detector": name, **settings}``; with
        ``defaults`` false, only the settings that differ from this detector's stills preset."""
        preset = type(self)()
        return {"detector": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                                          if defaults or getattr(self, f.name) != getattr(preset, f.name)}}


@dataclass(frozen=True)
class HaarSpec(_Spec):
    """The settings of ``--detector haar``: ``HaarFaceDetector``'s fields (sizes in pixels of the
    frame: ``min_face``, ``detect_width``, ``coarse_side``, ``ladder_window``; ``rotations`` in
    degrees; see there), defaulting to the stills preset ``STILL_DETECTION`` (``live()``: the live
    preset ``LIVE_DETECTION``), plus ``second_look``: the least score BlazeFace's second look
    (``SecondLook``) must give a box, in [0, 1) (0: no second look; default ``SECOND_LOOK``)."""

    name: ClassVar[str] = "haar"
    bounds: ClassVar[dict[str, tuple[float, float | None, str]]] = {
        "detect_width": (0, None, "[)"), "min_face": (1, None, "[)"), "scale_factor": (1.0, None, "()"),
        "min_neighbors": (1, None, "[)"), "coarse_side": (0, None, "[)"), "relative_min_face": (0.0, 1.0, "[]"),
        "ladder_window": (1, None, "[)"), "second_look": (0.0, 1.0, "[)")}

    detect_width: int = STILL_DETECTION["detect_width"]
    min_face: int = STILL_DETECTION["min_face"]
    scale_factor: float = STILL_DETECTION["scale_factor"]
    min_neighbors: int = STILL_DETECTION["min_neighbors"]
    coarse_side: int = STILL_DETECTION["coarse_side"]
    relative_min_face: float = STILL_DETECTION["relative_min_face"]
    rotations: tuple[float, ...] = ()
    equalize: str = STILL_DETECTION["equalize"]
    ladder_window: int = LADDER_WINDOW
    cascade: str = haar_cascade_path()
    second_look: float = SECOND_LOOK

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.equalize not in EQUALIZATIONS:
            raise SpecError(f"haar setting equalize must be one of {', '.join(EQUALIZATIONS)}, not {self.equalize!r}")

    @classmethod
    def live(cls, second_look: float = SECOND_LOOK, equalize: str = LIVE_DETECTION["equalize"]) -> HaarSpec:
        """The live-video preset (``LIVE_DETECTION``: one scan of a 240 px copy for faces of 80 px
        and more) with these ``second_look`` and ``equalize``."""
        live = LIVE_DETECTION
        return cls(live["detect_width"], live["min_face"], live["scale_factor"], live["min_neighbors"],
                   live["coarse_side"], live["relative_min_face"], equalize=equalize, second_look=second_look)

    def for_live(self) -> HaarSpec:
        """The live preset keeping this spec's ``second_look``, ``equalize`` and ``cascade``."""
        return dataclasses.replace(HaarSpec.live(self.second_look, self.equalize), cascade=self.cascade)

    def create(self, threads: int | None = None) -> FaceDetector:
        """A ``HaarFaceDetector`` with these settings, wrapped in ``SecondLook`` (its BlazeFace on
        ``threads`` ONNX Runtime threads) unless ``second_look`` is 0. RuntimeError when OpenCV
        cannot load ``cascade``."""
        haar = HaarFaceDetector(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                   if f.name != "second_look"})
        return SecondLook(haar, self.second_look, threads) if self.second_look else haar


@dataclass(frozen=True)
class BlazeFaceSpec(_Spec):
    """The settings of ``--detector blazeface``: ``BlazeFaceDetector``'s fields (see there;
    ``min_face`` in pixels, ``turned_scans`` one of ``TURNED_SCANS``, the others fractions),
    defaulting to its stills preset ``BLAZEFACE_DETECTION`` (``for_live()``: the live preset)."""

    name: ClassVar[str] = "blazeface"
    bounds: ClassVar[dict[str, tuple[float, float | None, str]]] = {
        "min_face": (1, None, "[)"), "score_threshold": (0.0, 1.0, "()"), "relative_min_face": (0.0, 1.0, "[]"),
        "upside_down_check": (0.0, 1.0, "[]")}

    min_face: int = BLAZEFACE_DETECTION["min_face"]
    score_threshold: float = BLAZEFACE_DETECTION["score_threshold"]
    relative_min_face: float = BLAZEFACE_DETECTION["relative_min_face"]
    upside_down_check: float = UPSIDE_DOWN_CHECK
    turned_scans: str = BLAZEFACE_DETECTION["turned_scans"]
    model: str = str(BLAZEFACE_FILE)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.turned_scans not in TURNED_SCANS:
            raise SpecError(f"blazeface setting turned_scans must be one of {', '.join(TURNED_SCANS)}, "
                            f"not {self.turned_scans!r}")

    def for_live(self) -> BlazeFaceSpec:
        """The live-video preset: one look at the whole frame for faces of ``LIVE_DETECTION``'s
        ``min_face`` (80 px) and more, no turned scans (a frame without a face would cost four
        looks), keeping this spec's score threshold, check and model."""
        return dataclasses.replace(self, min_face=LIVE_DETECTION["min_face"], relative_min_face=0.0,
                                   turned_scans="off")

    def create(self, threads: int | None = None) -> BlazeFaceDetector:
        """A ``BlazeFaceDetector`` with these settings on ``threads`` ONNX Runtime threads."""
        return BlazeFaceDetector(threads=threads, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


DetectorSpec = HaarSpec | BlazeFaceSpec
"""The typed settings of one detector."""
DETECTOR_SPECS: dict[str, type[HaarSpec] | type[BlazeFaceSpec]] = {"haar": HaarSpec, "blazeface": BlazeFaceSpec}
"""Each detector name of ``DETECTOR_NAMES``: the spec class of its settings."""


def detector_spec(settings: DetectorSpec | Mapping[str, Any] | None = None) -> DetectorSpec:
    """The typed spec of ``settings``: a spec as it is, or a plain dict read by the ``from_dict``
    of the detector it names (``DEFAULT_DETECTOR`` when it names none; None: that detector's
    stills preset). SpecError, one line, for an unknown detector or a setting it does not take."""
    if isinstance(settings, (HaarSpec, BlazeFaceSpec)):
        return settings
    name = (settings or {}).get("detector", DEFAULT_DETECTOR)
    if name not in DETECTOR_SPECS:
        raise SpecError(f"unknown detector {name!r}; known: {', '.join(DETECTOR_NAMES)}")
    return DETECTOR_SPECS[name].from_dict(settings)


def live_settings(settings: DetectorSpec | Mapping[str, Any] | None = None) -> dict:
    """The live-video preset of the detector ``settings`` names (the values `webcam` and `video`
    default to; ``for_live`` of its spec): Haar's on a 240 px copy, or BlazeFace's one look at the
    whole frame, both for faces of 80 px and more; as plain settings holding only what differs
    from the stills preset. SpecError as ``detector_spec``."""
    return detector_spec(settings).for_live().to_dict(defaults=False)


def create_detector(settings: DetectorSpec | Mapping[str, Any] | None = None, threads: int | None = None) -> FaceDetector:
    """The detector ``settings`` describe: a ``HaarSpec`` / ``BlazeFaceSpec``, or plain settings
    (``{"detector": "haar" | "blazeface", **settings}``, checked by ``detector_spec``: SpecError, one
    line, for an unknown detector, another detector's setting or a bad value); None: the default
    detector's stills preset. ``threads`` bounds BlazeFace's ONNX Runtime (Haar runs on OpenCV's
    threads, set with ``cv2.setNumThreads``). Haar's boxes get BlazeFace's second look
    (``SecondLook``) unless ``second_look`` is 0."""
    return detector_spec(settings).create(threads)
