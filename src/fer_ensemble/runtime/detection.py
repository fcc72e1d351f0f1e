"""Face detection behind a small interface; OpenCV's Haar frontal-face cascade by default.

OpenCV 5 removed ``CascadeClassifier``: the package pins ``opencv-python-headless<5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from fer_ensemble.preprocess import to_gray

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels


class FaceDetector(Protocol):
    """Anything that returns face boxes for a gray frame."""

    def detect(self, gray: np.ndarray) -> list[Box]: ...


def haar_cascade_path(name: str = "haarcascade_frontalface_default.xml") -> str:
    """The cascade file that ships inside opencv-python."""
    return str(cv2.data.haarcascades) + name


# Haar settings measured on 640x480 frames and on ../shared/data/faces (see the README):
# stills scan a 960 px wide copy for faces of 32 px and more; live video scans 240 px for faces of 80 px
STILL_DETECTION = {"detect_width": 960, "min_face": 32, "scale_factor": 1.15}
LIVE_DETECTION = {"detect_width": 240, "min_face": 80, "scale_factor": 1.1}


@dataclass
class HaarFaceDetector:
    """Haar cascade on a frame downscaled to ``detect_width`` pixels (fast), boxes in frame pixels.

    ``min_face`` is the smallest face side kept, in frame pixels. The defaults are the stills
    preset (what ``fer-ensemble predict`` uses); ``for_live()`` is what the webcam app uses.
    """

    detect_width: int = STILL_DETECTION["detect_width"]
    min_face: int = STILL_DETECTION["min_face"]
    scale_factor: float = STILL_DETECTION["scale_factor"]
    min_neighbors: int = 5
    cascade: str = haar_cascade_path()

    @classmethod
    def for_live(cls) -> HaarFaceDetector:
        """The preset for live video: fast enough for every frame of a 640x480 webcam."""
        return cls(**LIVE_DETECTION)

    def __post_init__(self) -> None:
        self._classifier = cv2.CascadeClassifier(self.cascade)
        if self._classifier.empty():
            raise RuntimeError(f"cannot load the Haar cascade {self.cascade}")

    def detect(self, gray: np.ndarray) -> list[Box]:
        gray = to_gray(gray)
        height, width = gray.shape[:2]
        scale = min(1.0, self.detect_width / width) if self.detect_width else 1.0
        small = gray if scale == 1.0 else cv2.resize(
            gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        min_side = max(12, round(self.min_face * scale))
        found = self._classifier.detectMultiScale(
            cv2.equalizeHist(small), scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: (b[0], b[1]))


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


def crop_faces(gray: np.ndarray, boxes: list[Box], margin: float = FACE_FRAMING["margin"],
               offset: float = FACE_FRAMING["offset"]) -> list[np.ndarray]:
    """Gray crops framed as FER+'s faces; where the frame ends, its edge pixels are repeated
    (as in training's augmentation), so a face at the border keeps its position and scale."""
    height, width = gray.shape[:2]
    crops = []
    for box in boxes:
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
