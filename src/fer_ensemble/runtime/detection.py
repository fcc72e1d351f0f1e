"""Face detection behind a small interface; OpenCV's Haar frontal-face cascade by default (BlazeFace,
the option, is in ``blazeface.py``); crops of the detected faces as the models were trained on them.

OpenCV 5 removed ``CascadeClassifier``: the package pins ``opencv-python-headless<5``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import cv2
import cv2.data  # the cascade files' folder: a submodule the stubs of cv2 do not import
import numpy as np

from fer_ensemble.errors import SpecError
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.deprecation import deprecated_attribute, warn_deprecated

Box = tuple[int, int, int, int]
"""A face box ``(x, y, w, h)``: the top-left corner, width and height, ints in pixels of the frame
(it may reach past the frame's edge)."""


class TurnedBox(tuple[int, int, int, int]):
    """A box (x, y, w, h) that also knows how far the head is turned in the image plane: ``roll``,
    the angle of its eyes' line in degrees, clockwise as seen (180: upside down). ``crop_faces``
    turns such a face upright; everything else reads it as a plain box."""

    roll: float

    def __new__(cls, box, roll: float = 0.0):
        turned = super().__new__(cls, box)
        turned.roll = float(roll)
        return turned

    def __getnewargs__(self):
        return tuple(self), self.roll


class FaceDetector(Protocol):
    """Anything that returns face boxes for a BGR or gray image (a ``TurnedBox`` may carry a roll).
    One with a true ``reads_colour`` attribute is given the colour image; others may get it gray."""

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes ``(x, y, w, h)`` in pixels of ``image``, an (H, W, 3) BGR or (H, W) gray
        uint8 array."""
        ...


def detect_faces(detector: FaceDetector, image: np.ndarray, gray: np.ndarray) -> list[Box]:
    """``detector``'s boxes: it gets the colour image if it reads colour, else the gray copy the
    caller made for the crops, so a photo is converted to gray once, not twice."""
    return detector.detect(image if getattr(detector, "reads_colour", False) else gray)


def largest_face(detector: FaceDetector, image: np.ndarray, gray: np.ndarray) -> Box | None:
    """The largest of ``detect_faces``' boxes by area (a labelled photo's subject), None for no face."""
    boxes = detect_faces(detector, image, gray)
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


def haar_cascade_path(name: str = "haarcascade_frontalface_default.xml") -> str:
    """The path of the cascade file ``name`` that ships inside opencv-python (``cv2.data``)."""
    return str(cv2.data.haarcascades) + name


class DetectorOptions:
    """What the options dataclasses of the detectors (``HaarOptions``, ``BlazeFaceOptions``) share:
    range checks when made, and plain dicts (``{"detector": name, **settings}``) read and written.
    Each subclass is a frozen dataclass whose defaults are its stills preset."""

    name: ClassVar[str]
    bounds: ClassVar[dict[str, tuple[float, float | None, str]]]  # key: (low, high, "[]", "(]", "[)" or "()")
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}  # key: the values a text setting takes

    def __post_init__(self) -> None:
        for key, (low, high, interval) in self.bounds.items():
            value = getattr(self, key)
            below = value < low or (interval[0] == "(" and value == low)
            above = high is not None and (value > high or (interval[1] == ")" and value == high))
            if below or above:
                upper = "inf" if high is None else f"{high:g}"
                raise SpecError(f"{self.name} setting {key} must lie in {interval[0]}{low:g}, {upper}{interval[1]}, "
                                f"not {value!r}")
        for key, known in self.choices.items():
            if getattr(self, key) not in known:
                raise SpecError(f"{self.name} setting {key} must be one of {', '.join(known)}, not {getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None = None):
        """The options of plain ``settings`` (``{"detector": name, **settings}``; ``detector`` may be
        left out): each key a setting of this detector, of the type of its default and in range, the
        others at the stills preset's values. Raises SpecError (a UserError, exit code 2), one line
        naming the key: another detector's name, another detector's setting (whatever its value), an
        unknown key, a value of the wrong type or out of range."""
        settings = dict(settings or {})
        name = settings.pop("detector", cls.name)
        if name != cls.name:
            raise SpecError(f"{cls.__name__} reads the settings of {cls.name}, not of the detector {name!r}")
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in settings:
            if key in defaults:
                continue
            owners = [other.name for other in DetectorOptions.__subclasses__()
                      if other is not cls and key in {f.name for f in dataclasses.fields(other)}]  # type: ignore[arg-type]
            if owners:
                raise SpecError(f"{key} is a setting of the {' and '.join(owners)} detector, not of {cls.name}")
            raise SpecError(f"unknown {cls.name} setting {key!r} (it takes {', '.join(defaults)})")
        return cls(**{key: _setting(f"{cls.name} setting {key}", value, type(defaults[key]))
                      for key, value in settings.items()})

    @classmethod
    def stills(cls, **settings: Any):
        """The stills preset (photos: ``predict``, ``batch``'s photos, ``/v1/predict``: the defaults)
        with ``settings``."""
        return cls(**settings)

    def to_dict(self, defaults: bool = True) -> dict[str, Any]:
        """The plain settings ``from_dict`` reads back: ``{"detector": name, **settings}``; with
        ``defaults`` false, only the settings that differ from this detector's stills preset."""
        preset = type(self)()
        return {"detector": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                                          if defaults or getattr(self, f.name) != getattr(preset, f.name)}}


def _setting(where: str, value: object, kind: type) -> Any:
    """``value`` as a setting whose default is of type ``kind`` (int: pixels, float, str, or tuple:
    of degrees) takes it; SpecError, one line starting with ``where``, otherwise."""
    if kind is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list of numbers (degrees), not {value!r}")
        return tuple(_setting(where, v, float) for v in value)
    if kind is str:
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a string, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise SpecError(f"{where} must be a number, not {value!r}")
    if kind is int:
        if value != int(value):
            raise SpecError(f"{where} must be a whole number of pixels, not {value!r}")
        return int(value)
    return float(value)


LIVE_MIN_FACE = 80
"""The smallest face of both detectors' live presets (``webcam``, ``video``, streams), in frame
pixels: a person in front of a webcam; smaller faces would cost every frame finer scans."""
LADDER_WINDOW = 50
"""The smallest face a ladder step looks for, in pixels of its scaled copy: the frontal cascade's
24 px window finds few faces below about 50 px (c12 of ``../shared/data/user-cases``: a 114 px face
beside a 193 px one was lost while this was 30), so a step at scale ``s`` covers faces of
``50 / s`` frame pixels and more."""
EQUALIZATIONS = {"none": None, "global": cv2.equalizeHist,
                 "clahe": cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply}
"""What the scanned copy's contrast gets first. Global histogram equalisation (what OpenCV's
samples do) washes out a face on a plain or bright background (c08, c13 of the user-cases); the
choice among these was measured (docs/detection.md, "Finding faces")."""
SECOND_LOOK = 0.6
"""Haar's boxes are kept only where BlazeFace, shown the box with one box side of the photo around
it, scores a face at least this likely (``--second-look``; 0: off; ``detectors.SecondLook``). On the
five labelled group photos the Haar ladder's false box (a belt) scores 0.56 and every face it finds
0.63 or more; the user-cases' masked face scores 0.76, the shuttle box that other equalisations find
in the upside-down photo 0.0. Chosen there, like BlazeFace's own threshold: not a held-out figure."""


# Haar's presets, measured (`fer-ensemble benchmark --stills`, docs/speed.md, "Photos"): stills climb
# a ladder of scans from a small copy (short side 200 px) up, stopping as soon as the faces found say
# that smaller ones need not be searched for (see HaarFaceDetector); live video scans one 240 px copy
# for faces of 80 px and more, fast enough for every webcam frame
@dataclass(frozen=True)
class HaarOptions(DetectorOptions):
    """The settings of ``HaarFaceDetector`` (``--detector haar``), defaulting to its stills preset
    (``stills()``, what ``fer-ensemble predict`` uses: the ladder from a 200 px copy for faces of
    40 px and more); ``live()``: one scan of a 240 px wide copy for faces of ``LIVE_MIN_FACE`` px and
    more. Sizes in frame pixels (``min_face``, ``detect_width``, ``coarse_side``, ``ladder_window``),
    ``rotations`` in degrees, ``equalize`` one of ``EQUALIZATIONS`` (see ``HaarFaceDetector``);
    ``second_look``: the least score BlazeFace's second look at each box must give it, in [0, 1)
    (0: none), applied by ``detectors.create_detector``. SpecError, one line, for a value out of range."""

    name: ClassVar[str] = "haar"
    bounds: ClassVar[dict[str, tuple[float, float | None, str]]] = {
        "detect_width": (0, None, "[)"), "min_face": (1, None, "[)"), "scale_factor": (1.0, None, "()"),
        "min_neighbors": (1, None, "[)"), "coarse_side": (0, None, "[)"), "relative_min_face": (0.0, 1.0, "[]"),
        "ladder_window": (1, None, "[)"), "second_look": (0.0, 1.0, "[)")}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"equalize": tuple(EQUALIZATIONS)}

    detect_width: int = 0
    min_face: int = 40
    scale_factor: float = 1.2
    min_neighbors: int = 5
    coarse_side: int = 200
    relative_min_face: float = 0.4
    rotations: tuple[float, ...] = ()
    equalize: str = "none"
    ladder_window: int = LADDER_WINDOW
    cascade: str = haar_cascade_path()
    second_look: float = SECOND_LOOK

    @classmethod
    def live(cls, **settings: Any) -> HaarOptions:
        """The live preset (``webcam``, ``video``, streams: one scan of a 240 px wide copy for faces of
        ``LIVE_MIN_FACE`` px and more) with ``settings``."""
        return cls(**{"detect_width": 240, "min_face": LIVE_MIN_FACE, "scale_factor": 1.1, "coarse_side": 0,
                      "relative_min_face": 0.0, **settings})

    def for_live(self) -> HaarOptions:
        """The live preset keeping these options' ``second_look``, ``equalize`` and ``cascade``."""
        return HaarOptions.live(second_look=self.second_look, equalize=self.equalize, cascade=self.cascade)


class OptionsDetector:
    """What ``HaarFaceDetector`` and ``BlazeFaceDetector`` share: their settings are ``options``, a
    frozen dataclass. Reading a setting off the detector (``detector.min_face``, the former API)
    warns and gives ``options``' value; setting one is refused (AttributeError), as it would be
    silently ignored: make a detector with other options instead."""

    options: DetectorOptions
    options_type: ClassVar[type]  # the detector's options dataclass: its defaults when none are given

    def take_options(self, options: DetectorOptions | None, settings: dict[str, Any]) -> None:
        """Set ``options`` (default: ``options_type``'s stills preset) with ``settings`` replacing some of
        them (checked as the options are: SpecError, one line)."""
        chosen: Any = options or self.options_type()  # a frozen dataclass, a subclass of DetectorOptions
        self.options = dataclasses.replace(chosen, **settings) if settings else chosen

    def _option(self, name: str) -> DetectorOptions | None:
        """The options when ``name`` is one of their settings, else None."""
        options = self.__dict__.get("options")
        return options if options is not None and name in {f.name for f in dataclasses.fields(options)} else None  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # only for names the object does not have
        if (options := self._option(name)) is not None:
            warn_deprecated("detector settings as attributes")
            return getattr(options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if (options := self._option(name)) is not None:
            raise AttributeError(f"{name} is one of the detector's options, fixed when it is made: "
                                 f"{type(self).__name__}({type(options).__name__}(...), {name}=...)")
        super().__setattr__(name, value)


class HaarFaceDetector(OptionsDetector):
    """OpenCV's Haar cascade; boxes in frame pixels, sorted left to right. ``options`` (default: the
    stills preset) with ``settings`` replacing some of them: ``HaarFaceDetector(HaarOptions.live())``,
    ``HaarFaceDetector(relative_min_face=0)``; its ``second_look`` is ``create_detector``'s business.
    SpecError, one line, for a setting out of range; RuntimeError when OpenCV cannot load ``cascade``.

    With ``coarse_side`` set (the stills preset, what ``fer-ensemble predict`` uses) it climbs a
    ladder: scan a copy whose short side is ``coarse_side``, then copies twice as large, until a face
    turns up or faces of ``min_face`` pixels are covered; once faces are found, one last scan at the
    scale that covers faces down to ``relative_min_face`` times the largest (0: down to ``min_face``
    always, for tiny faces beside large ones). A portrait is done at the first, cheap step; a
    group photo scans only as fine as its faces need. Without ``coarse_side`` (the live preset), one
    scan of a copy ``detect_width`` pixels wide (0: full size). ``rotations``: extra scans of the
    image turned by these angles (degrees), for tilted heads, at the scale of the last upright scan.
    """

    options: HaarOptions
    options_type = HaarOptions

    def __init__(self, options: HaarOptions | None = None, **settings: Any) -> None:
        self.take_options(options, settings)
        self._local = threading.local()  # OpenCV's CascadeClassifier is not thread-safe: one per thread
        if self._classifier.empty():
            raise RuntimeError(f"cannot load the Haar cascade {self.options.cascade}")

    def __repr__(self) -> str:
        return f"HaarFaceDetector({self.options!r})"

    @classmethod
    def for_live(cls) -> HaarFaceDetector:
        """Deprecated (``runtime.deprecation.DEPRECATED``): ``HaarFaceDetector(HaarOptions.live())``."""
        warn_deprecated("HaarFaceDetector.for_live")
        return cls(HaarOptions.live())

    @property
    def _classifier(self) -> cv2.CascadeClassifier:
        """This thread's cascade (a detector shared by threads gives each its own)."""
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = self._local.classifier = cv2.CascadeClassifier(self.options.cascade)
        return classifier

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes ``(x, y, w, h)`` in pixels of ``image`` (an (H, W, 3) BGR or (H, W) gray
        uint8 array; BGR is converted to gray first), sorted left to right."""
        gray = to_gray(image)
        if not self.options.coarse_side:
            width = gray.shape[1]
            scale = min(1.0, self.options.detect_width / width) if self.options.detect_width else 1.0
            boxes = self._scan(gray, scale, self.options.min_face, floor=12)
        else:
            boxes, scale = self._ladder(gray)
        for angle in self.options.rotations:
            boxes = _merge(boxes, self._scan_rotated(gray, angle, scale))
        return sorted(boxes, key=lambda b: (b[0], b[1]))

    def _finest_scale(self, width: int) -> float:
        finest = min(1.0, self.options.ladder_window / self.options.min_face)
        return min(finest, self.options.detect_width / width) if self.options.detect_width else finest

    def _ladder(self, gray: np.ndarray) -> tuple[list[Box], float]:
        """Coarse to fine; returns the boxes and the scale of the last scan."""
        finest = self._finest_scale(gray.shape[1])
        scale = min(finest, self.options.coarse_side / min(gray.shape[:2]))
        boxes: list[Box] = []
        while True:
            boxes = _merge(boxes, self._scan(gray, scale, self.options.min_face, floor=self._ladder_floor(scale)))
            if boxes:
                smallest = self.options.relative_min_face * max(b[2] for b in boxes)
                needed = min(finest, self.options.ladder_window / smallest) if smallest > 0 else finest
                if needed > scale * 1.05:
                    found = self._scan(gray, needed, self.options.min_face, floor=self._ladder_floor(needed))
                    boxes = _merge(_merge([], found), boxes)
                    scale = needed
                return boxes, scale
            if scale >= finest:
                return boxes, scale
            scale = min(finest, scale * 2)

    def _ladder_floor(self, scale: float) -> int:
        """The smallest window of a ladder step: ``ladder_window`` on a reduced copy; at full size,
        where nothing finer is left, down to the cascade's own 24 px (``min_face`` below that)."""
        return self.options.ladder_window if scale < 1.0 else 24

    def _scan(self, gray: np.ndarray, scale: float, min_face: float, floor: int = 24) -> list[Box]:
        """One detectMultiScale on ``gray`` scaled by ``scale``, for faces of ``min_face`` frame
        pixels and more (never below ``floor`` pixels of the scaled copy)."""
        height, width = gray.shape[:2]
        small = gray if scale >= 1.0 else cv2.resize(
            gray, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        side = max(floor, round(min(scale, 1.0) * min_face))
        equalize = EQUALIZATIONS[self.options.equalize]
        found = self._classifier.detectMultiScale(
            small if equalize is None else equalize(small), scaleFactor=self.options.scale_factor, minNeighbors=self.options.min_neighbors,
            minSize=(side, side))
        scale = min(scale, 1.0)
        return [(int(round(x / scale)), int(round(y / scale)), int(round(w / scale)), int(round(h / scale)))
                for x, y, w, h in np.asarray(found).reshape(-1, 4)]

    def _scan_rotated(self, gray: np.ndarray, angle: float, scale: float) -> list[Box]:
        """Faces of the image turned by ``angle`` degrees, as upright boxes around their centres."""
        height, width = gray.shape[:2]
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
        size = (int(height * sin + width * cos), int(height * cos + width * sin))
        turn[0, 2] += size[0] / 2 - width / 2
        turn[1, 2] += size[1] / 2 - height / 2
        turned = cv2.warpAffine(gray, turn, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        back = cv2.invertAffineTransform(turn)
        boxes = []
        for x, y, w, h in self._scan(turned, scale, self.options.min_face, floor=self._ladder_floor(scale) if self.options.coarse_side else 12):
            cx, cy = back @ np.array([x + w / 2, y + h / 2, 1.0])
            boxes.append((int(round(cx - w / 2)), int(round(cy - h / 2)), w, h))
        return boxes


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (same pixel grid), in [0, 1]; 0 when
    both are empty."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter_w = max(0, min(ax1, bx1) - max(a[0], b[0]))
    inter_h = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _merge(kept: list[Box], new: list[Box]) -> list[Box]:
    """``kept`` plus the boxes of ``new`` that overlap none kept so far (IoU below 0.3), smallest first:
    one face found at two window sizes (the larger with more hair and background) stays one box."""
    merged = list(kept)
    for box in sorted(new, key=lambda b: b[2] * b[3]):
        if all(iou(box, k) < 0.3 for k in merged):
            merged.append(box)
    return merged


FACE_FRAMING = {"margin": 0.01, "offset": 0.0}
"""How a Haar box becomes the crop the models were trained on: widened by ``margin`` of its side on
every side and moved down by ``offset`` of its side. Measured by ``scripts/measure_framing.py``
(Haar run on FER+ images, its box compared with the FER+ frame); a test pins these values."""


def expand_box(box: Box, margin: float, offset: float = 0.0) -> Box:
    """Grow a box by ``margin`` of its size on every side and shift it down by ``offset`` of its
    height; the result may reach outside the frame (``crop_faces`` pads)."""
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    return x - dx, y - dy + round(h * offset), w + 2 * dx, h + 2 * dy


UPRIGHT_FROM_ROLL = 10.0
"""A face turned by at least this many degrees (a ``TurnedBox``'s roll) is cropped upright. Chosen on
FER+ Valid faces turned by 0-180 degrees (``scripts/measure_framing.py --alignment``): best mean
accuracy over the angles; levelling every small tilt (FER+'s own faces lean a few degrees, and the
models learned them so) cost 0.4 points on unturned faces."""


def crop_faces(gray: np.ndarray, boxes: list[Box], margin: float = FACE_FRAMING["margin"],
               offset: float = FACE_FRAMING["offset"], upright_from: float = UPRIGHT_FROM_ROLL) -> list[np.ndarray]:
    """One crop per box of ``boxes`` (``(x, y, w, h)`` in pixels of ``gray``), framed as FER+'s faces
    (``expand_box`` by ``margin`` and ``offset``): (h', w') arrays of ``gray``'s dtype (uint8),
    not resized; where the frame ends, its edge pixels are repeated (as in training's
    augmentation), so a face at the border keeps its position and scale; a box wholly outside the
    frame gives zeros. A ``TurnedBox`` turned by ``upright_from`` degrees or more is cropped
    turned back upright. ``gray``: (H, W) uint8 (a BGR array is cropped the same way)."""
    height, width = gray.shape[:2]
    crops = []
    for box in boxes:
        roll = getattr(box, "roll", 0.0)
        if abs(roll) >= upright_from and roll != 0.0:
            crops.append(_upright_crop(gray, box, roll, margin, offset))
            continue
        x, y, w, h = expand_box(box, margin, offset)
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
        if x1 <= x0 or y1 <= y0:
            crops.append(np.zeros((max(h, 1), max(w, 1)), gray.dtype))
            continue
        crop = gray[y0:y1, x0:x1]
        pads = (y0 - y, y + h - y1, x0 - x, x + w - x1)
        if any(pads):
            crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REPLICATE)
        crops.append(crop)
    return crops


def _upright_crop(gray: np.ndarray, box: Box, roll: float, margin: float, offset: float) -> np.ndarray:
    """The crop of ``expand_box`` taken in the face's own frame: the image turned by ``roll`` about
    the box's centre, so the eyes' line comes out level."""
    x, y, w, h = box
    _, _, crop_w, crop_h = expand_box(box, margin, offset)
    centre = (x + w / 2, y + h / 2)
    turn = cv2.getRotationMatrix2D(centre, roll, 1.0)
    turn[0, 2] += crop_w / 2 - centre[0]
    turn[1, 2] += crop_h / 2 - (centre[1] + round(h * offset))
    return cv2.warpAffine(gray, turn, (crop_w, crop_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def __getattr__(name: str) -> Any:
    """The deprecated preset dicts (``runtime.deprecation.DEPRECATED``), for one release."""
    return deprecated_attribute(__name__, name, {
        "STILL_DETECTION": lambda: {k: v for k, v in HaarOptions.stills().to_dict().items() if k in _PRESET_KEYS},
        "LIVE_DETECTION": lambda: {k: v for k, v in HaarOptions.live().to_dict().items() if k in _PRESET_KEYS}})


_PRESET_KEYS = ("detect_width", "min_face", "scale_factor", "min_neighbors", "coarse_side", "relative_min_face", "equalize")
