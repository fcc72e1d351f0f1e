"""Face detection behind a small interface; OpenCV's Haar frontal-face cascade by default (BlazeFace,
the option, is in ``blazeface.py``); crops of the detected faces as the models were trained on them.

OpenCV 5 removed ``CascadeClassifier``: the package pins ``opencv-python-headless<5``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, TypedDict

import cv2
import cv2.data  # the cascade files' folder: a submodule the stubs of cv2 do not import
import numpy as np

from fer_ensemble.preprocess import to_gray

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


class HaarPreset(TypedDict):
    """The settings of a ``HaarFaceDetector`` preset (its fields of the same names)."""

    detect_width: int
    min_face: int
    scale_factor: float
    min_neighbors: int
    coarse_side: int
    relative_min_face: float
    equalize: str


# Haar settings, measured (`fer-ensemble benchmark --stills`, docs/speed.md, "Photos"):
# stills climb a ladder of scans from a small copy (short side 200 px) up, stopping as soon as the
# faces found say that smaller ones need not be searched for (see HaarFaceDetector); live video
# scans one 240 px copy for faces of 80 px and more, fast enough for every webcam frame
STILL_DETECTION: HaarPreset = {"detect_width": 0, "min_face": 40, "scale_factor": 1.2, "min_neighbors": 5,
                               "coarse_side": 200, "relative_min_face": 0.4, "equalize": "none"}
"""Haar's stills preset (``fer-ensemble predict``, ``HaarFaceDetector()``'s defaults): the ladder
from a 200 px copy for faces of 40 px and more (sizes in frame pixels)."""
LIVE_DETECTION: HaarPreset = {"detect_width": 240, "min_face": 80, "scale_factor": 1.1, "min_neighbors": 5,
                              "coarse_side": 0, "relative_min_face": 0.0, "equalize": "none"}
"""Haar's live preset (``webcam``, ``video``, ``HaarFaceDetector.for_live()``): one scan of a
240 px wide copy for faces of 80 px and more (frame pixels), fast enough for every webcam frame."""
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


@dataclass
class HaarFaceDetector:
    """OpenCV's Haar cascade; boxes in frame pixels, sorted left to right.

    With ``coarse_side`` set (the stills preset, what ``fer-ensemble predict`` uses) it climbs a
    ladder: scan a copy whose short side is ``coarse_side``, then copies twice as large, until a face
    turns up or faces of ``min_face`` pixels are covered; once faces are found, one last scan at the
    scale that covers faces down to ``relative_min_face`` times the largest (0: down to ``min_face``
    always, for tiny faces beside large ones). A portrait is done at the first, cheap step; a
    group photo scans only as fine as its faces need. Without ``coarse_side`` (``for_live()``), one
    scan of a copy ``detect_width`` pixels wide (0: full size). ``rotations``: extra scans of the
    image turned by these angles (degrees), for tilted heads, at the scale of the last upright scan.
    """

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

    @classmethod
    def for_live(cls) -> HaarFaceDetector:
        """The preset for live video: fast enough for every frame of a 640x480 webcam."""
        return cls(**LIVE_DETECTION)

    def __post_init__(self) -> None:
        if self.equalize not in EQUALIZATIONS:
            raise ValueError(f"unknown equalization {self.equalize!r}; known: {', '.join(EQUALIZATIONS)}")
        self._local = threading.local()  # OpenCV's CascadeClassifier is not thread-safe: one per thread
        if self._classifier.empty():
            raise RuntimeError(f"cannot load the Haar cascade {self.cascade}")

    @property
    def _classifier(self) -> cv2.CascadeClassifier:
        """This thread's cascade (a detector shared by threads gives each its own)."""
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = self._local.classifier = cv2.CascadeClassifier(self.cascade)
        return classifier

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes ``(x, y, w, h)`` in pixels of ``image`` (an (H, W, 3) BGR or (H, W) gray
        uint8 array; BGR is converted to gray first), sorted left to right."""
        gray = to_gray(image)
        if not self.coarse_side:
            width = gray.shape[1]
            scale = min(1.0, self.detect_width / width) if self.detect_width else 1.0
            boxes = self._scan(gray, scale, self.min_face, floor=12)
        else:
            boxes, scale = self._ladder(gray)
        for angle in self.rotations:
            boxes = _merge(boxes, self._scan_rotated(gray, angle, scale))
        return sorted(boxes, key=lambda b: (b[0], b[1]))

    def _finest_scale(self, width: int) -> float:
        finest = min(1.0, self.ladder_window / self.min_face)
        return min(finest, self.detect_width / width) if self.detect_width else finest

    def _ladder(self, gray: np.ndarray) -> tuple[list[Box], float]:
        """Coarse to fine; returns the boxes and the scale of the last scan."""
        finest = self._finest_scale(gray.shape[1])
        scale = min(finest, self.coarse_side / min(gray.shape[:2]))
        boxes: list[Box] = []
        while True:
            boxes = _merge(boxes, self._scan(gray, scale, self.min_face, floor=self._ladder_floor(scale)))
            if boxes:
                smallest = self.relative_min_face * max(b[2] for b in boxes)
                needed = min(finest, self.ladder_window / smallest) if smallest > 0 else finest
                if needed > scale * 1.05:
                    found = self._scan(gray, needed, self.min_face, floor=self._ladder_floor(needed))
                    boxes = _merge(_merge([], found), boxes)
                    scale = needed
                return boxes, scale
            if scale >= finest:
                return boxes, scale
            scale = min(finest, scale * 2)

    def _ladder_floor(self, scale: float) -> int:
        """The smallest window of a ladder step: ``ladder_window`` on a reduced copy; at full size,
        where nothing finer is left, down to the cascade's own 24 px (``min_face`` below that)."""
        return self.ladder_window if scale < 1.0 else 24

    def _scan(self, gray: np.ndarray, scale: float, min_face: float, floor: int = 24) -> list[Box]:
        """One detectMultiScale on ``gray`` scaled by ``scale``, for faces of ``min_face`` frame
        pixels and more (never below ``floor`` pixels of the scaled copy)."""
        height, width = gray.shape[:2]
        small = gray if scale >= 1.0 else cv2.resize(
            gray, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        side = max(floor, round(min(scale, 1.0) * min_face))
        equalize = EQUALIZATIONS[self.equalize]
        found = self._classifier.detectMultiScale(
            small if equalize is None else equalize(small), scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
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
        for x, y, w, h in self._scan(turned, scale, self.min_face, floor=self._ladder_floor(scale) if self.coarse_side else 12):
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
