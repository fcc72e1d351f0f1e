"""The Python API: ``EmotionRecognizer().predict(image)`` -> faces with emotions (no torch).

Still images: detect, crop, classify all faces in one batch per member. Video: ``stream(frames)``
adds an IoU tracker (stable ``track_id``) and per-track smoothing of the probabilities so a still
face does not flicker between labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fer_ensemble.errors import UserError
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.detection import (
    FACE_FRAMING, Box, FaceDetector, HaarFaceDetector, crop_faces, detect_faces,
)
from fer_ensemble.runtime.drawing import draw_faces
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.tracking import IoUTracker, smooth

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
SHIPPED_ENSEMBLE = WEIGHTS_DIR / "ensemble.json"


def load_ensemble(path: str | Path | None = None, threads: int | None = None) -> Ensemble:
    """The ensemble file at ``path``, or the one shipped in the package."""
    path = Path(path) if path is not None else SHIPPED_ENSEMBLE
    if not path.is_file():
        raise UserError(
            f"no ensemble file at {path}" + (" (this install ships no weights)" if path == SHIPPED_ENSEMBLE else "")
        )
    return Ensemble.load(path, threads=threads)


class EmotionRecognizer:
    """Faces and their emotions in BGR or gray images.

    ``detector`` defaults to ``HaarFaceDetector()``, the stills preset of ``fer-ensemble predict``;
    pass ``HaarFaceDetector.for_live()`` for webcam-rate video, as the webcam app does, or
    ``BlazeFaceDetector()`` (``fer_ensemble.runtime.blazeface``) for turned heads and crowded photos.
    ``smoothing`` is the weight of the newest frame in ``stream`` (1.0 turns smoothing off);
    ``margin`` widens each detector box on every side and ``offset`` moves it down (fractions of
    the box side; the defaults frame faces as FER+ does). ``prior`` is ``"ferplus"``,
    ``"uniform"`` or a strength in [0, 1] (see ``fer_ensemble.prior``); None keeps the ensemble
    file's default.
    """

    def __init__(
        self,
        ensemble: str | Path | Ensemble | None = None,
        detector: FaceDetector | None = None,
        margin: float = FACE_FRAMING["margin"],
        smoothing: float = 0.5,
        threads: int | None = None,
        prior: str | float | None = None,
        offset: float = FACE_FRAMING["offset"],
    ):
        self.ensemble = ensemble if isinstance(ensemble, Ensemble) else load_ensemble(ensemble, threads)
        self.prior = self.ensemble.prior_strength(prior)
        self.detector = detector or HaarFaceDetector()
        self.margin = margin
        self.offset = offset
        self.smoothing = smoothing
        self.tracker = IoUTracker()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.ensemble.classes

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes; the detector gets the image as given (BlazeFace reads colour, Haar gray)."""
        return self.detector.detect(image)

    def classify(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """Probabilities (N, 8) for the given boxes, all faces in one batch per member."""
        crops = crop_faces(to_gray(image), boxes, self.margin, self.offset)
        return self.ensemble.predict_proba(crops, prior=self.prior)

    def predict(self, image: np.ndarray) -> list[Face]:
        """Every face in a still image (no tracking, no smoothing)."""
        gray = to_gray(image)  # once for the crops and a gray detector
        boxes = detect_faces(self.detector, image, gray)
        return [self._face(box, probs) for box, probs in zip(boxes, self.classify(gray, boxes))]

    def track(self, frame: np.ndarray, boxes: list[Box] | None = None) -> list[Face]:
        """One video frame: faces with stable track ids and smoothed probabilities."""
        gray = to_gray(frame)
        boxes = detect_faces(self.detector, frame, gray) if boxes is None else boxes
        probabilities = self.classify(gray, boxes)
        faces = []
        for track, probs in zip(self.tracker.update(boxes), probabilities):
            track.probabilities = smooth(track.probabilities, probs, self.smoothing)
            faces.append(self._face(track.box, track.probabilities, track.track_id))
        return faces

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, list[Face]]]:
        """Frames in, (frame, faces) out, with tracking and smoothing; starts a fresh tracker."""
        self.tracker.reset()
        for frame in frames:
            yield frame, self.track(frame)

    def annotate(self, image: np.ndarray, faces: list[Face], bars: bool = True) -> np.ndarray:
        """A copy of ``image`` with boxes, labels and (optionally) per-emotion bars drawn."""
        return draw_faces(image, faces, self.classes, bars=bars)

    def _face(self, box: Box, probs: np.ndarray, track_id: int | None = None) -> Face:
        best = int(np.argmax(probs))
        return Face(
            box=tuple(int(v) for v in box),
            label=self.classes[best],
            score=float(probs[best]),
            probabilities={name: float(p) for name, p in zip(self.classes, probs)},
            track_id=track_id,
        )
