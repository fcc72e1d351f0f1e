"""The Python API: ``EmotionRecognizer().predict(image)`` -> faces with emotions (no torch).

Still images: detect, crop, classify all faces in one batch per member. Video: ``stream(frames)``
adds an IoU tracker (stable ``track_id``) and per-track smoothing of the probabilities so a still
face does not flicker between labels.

A person's resting face makes answers relative to how that face looks at rest
(``fer_ensemble.runtime.calibration.RestingFace``): ``resting_face(images)`` builds one from photos
or crops of the person at rest, ``predict(image, resting_face=...)`` uses it, and in a stream each
track can take one (``set_resting_face``, or ``take_resting_face`` from what the track shows now:
the webcam's ``r`` key).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fer_ensemble.errors import UserError
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.calibration import RestingFace
from fer_ensemble.runtime.detection import (
    FACE_FRAMING,
    Box,
    FaceDetector,
    crop_faces,
    detect_faces,
    iou,
)
from fer_ensemble.runtime.detectors import create_detector
from fer_ensemble.runtime.drawing import draw_faces
from fer_ensemble.runtime.ensemble import WEIGHTS_DIR, Ensemble, load_calibration
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.tracking import IoUTracker, Track, smooth

SHIPPED_ENSEMBLE = WEIGHTS_DIR / "ensemble.json"
__all__ = ["SHIPPED_ENSEMBLE", "WEIGHTS_DIR", "EmotionRecognizer", "load_ensemble"]


def load_ensemble(path: str | Path | None = None, threads: int | None = None) -> Ensemble:
    """The ensemble file at ``path``, or the one shipped in the package."""
    path = Path(path) if path is not None else SHIPPED_ENSEMBLE
    if not path.is_file():
        raise UserError(
            f"no ensemble file at {path}" + (" (this install ships no weights)" if path == SHIPPED_ENSEMBLE else "")
        )
    return Ensemble.load(path, threads=threads)


HOLD_FRAMES = 3
"""In a stream, a tracked face the detector misses is still shown, with its last box and answer and
``held`` set, for up to this many frames (a tracker's "max age"; 0: not at all), unless a box of
this frame overlaps it (the same face, moved too far for its track): one missed detection does not
make its box blink out. Its track lives on for ``IoUTracker.max_missed``."""


class EmotionRecognizer:
    """Faces and their emotions in BGR or gray images.

    ``detector`` defaults to ``create_detector()`` (``fer_ensemble.runtime.detectors``): BlazeFace
    with the stills preset of ``fer-ensemble predict``; ``create_detector(live_settings())`` is the
    webcam app's live preset, and ``HaarFaceDetector()`` (``fer_ensemble.runtime.detection``) the
    OpenCV cascade.
    ``predict`` may be called from many threads on one recognizer (answers as from one thread; a
    shared Haar detector keeps a cascade per thread); ``track`` and ``stream`` keep one stream's
    tracks: one recognizer per stream.
    ``smoothing`` is the weight of the newest frame in ``stream`` (1.0 turns smoothing off);
    ``margin`` widens each detector box on every side and ``offset`` moves it down (fractions of
    the box side; the defaults frame faces as FER+ does). ``prior`` is ``"ferplus"``,
    ``"uniform"`` or a strength in [0, 1] (see ``fer_ensemble.prior``); None keeps the ensemble
    file's default. ``calibration`` is ``"none"``, a preset name (``"posed"``), or a file that
    ``fer-ensemble adapt`` wrote; None keeps the ensemble file's own (the shipped one has none).
    It is set on the ensemble, so a passed ``Ensemble`` object is changed too.
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
        calibration: str | Path | None = None,
    ):
        self.ensemble = ensemble if isinstance(ensemble, Ensemble) else load_ensemble(ensemble, threads)
        if calibration is not None:
            self.ensemble.calibration = load_calibration(calibration)
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing is the newest frame's weight, in (0, 1] (1: off); got {smoothing}")
        self.prior = self.ensemble.prior_strength(prior)
        self.detector = detector or create_detector()
        self.margin = margin
        self.offset = offset
        self.smoothing = smoothing
        self.hold = HOLD_FRAMES
        self.tracker = IoUTracker()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.ensemble.classes

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes ``(x, y, w, h)``: ints, pixels of ``image`` (top-left corner, width, height;
        a box may reach past the image's edge, e.g. a face cut by the top of a photo). The detector
        gets the image as given: an (H, W, 3) BGR or (H, W) gray uint8 array (BlazeFace reads colour,
        Haar converts to gray)."""
        return self.detector.detect(image)

    def classify(self, image: np.ndarray, boxes: list[Box], resting_face: RestingFace | None = None) -> np.ndarray:
        """Probabilities (N, 8) float32 for the given boxes ([x, y, w, h] in pixels of ``image``,
        BGR or gray uint8), all faces in one batch per member, relative to ``resting_face`` if given."""
        return self.ensemble.answer(self._native(to_gray(image), boxes), self.prior, resting_face)

    def _native(self, gray: np.ndarray, boxes: list[Box]) -> np.ndarray:
        return self.ensemble.native_probabilities(crop_faces(gray, boxes, self.margin, self.offset))

    def resting_face(self, images: Iterable[np.ndarray], crops: bool = False, **options) -> RestingFace:
        """A person's resting face from photos of them at rest (BGR or gray uint8; the largest face
        of each is used) or, with ``crops``, from face crops. ``options`` go to ``RestingFace``
        (``method``, ``strength``). ValueError when no image shows a face."""
        native = []
        for image in images:
            image = check_image(image)
            gray = to_gray(image)
            if crops:
                native.append(self.ensemble.native_probabilities([gray]))
                continue
            boxes = detect_faces(self.detector, image, gray)
            if boxes:
                native.append(self._native(gray, [max(boxes, key=lambda b: b[2] * b[3])]))
        if not native:
            raise ValueError("no face found in the resting-face image(s)")
        return self.ensemble.resting_face(np.concatenate(native), **options)

    def predict(self, image: np.ndarray, resting_face: RestingFace | None = None) -> list[Face]:
        """Every face in a still image, left to right by box: ``Face`` objects with ``box`` (x, y, w,
        h in image pixels), ``label``, ``score`` and the eight ``probabilities`` (floats summing to
        1), ``track_id`` None (no tracking, no smoothing). ``image``: an (H, W, 3) BGR, (H, W, 4)
        BGRA or (H, W) gray uint8 array, or what ``check_image`` converts (an (H, W, 1) array, 16-bit
        or [0, 1] float images, a PIL image); TypeError / ValueError naming what it takes otherwise.
        Each face is read relative to ``resting_face`` when given (one person's photos at rest)."""
        image = check_image(image)
        gray = to_gray(image)  # once for the crops and a gray detector
        boxes = detect_faces(self.detector, image, gray)
        probabilities = self.classify(gray, boxes, resting_face)
        return [self._face(box, probs, relative=resting_face is not None)
                for box, probs in zip(boxes, probabilities)]

    def track(self, frame: np.ndarray, boxes: list[Box] | None = None, budget: int | None = None) -> list[Face]:
        """One video frame (inputs as ``predict``): faces with stable ``track_id`` s (1, 2, ...
        from the last ``tracker.reset()``, matched by IoU) and probabilities smoothed per track; a
        track with a resting face (``set_resting_face``) is read relative to it. A tracked face the
        detector misses is returned for up to ``HOLD_FRAMES`` frames with ``held`` set.

        ``boxes``: this frame's face boxes when the caller detected them (the webcam's detector
        thread); they replace detection and update the tracker exactly as detected boxes would.
        None: detect here.

        ``budget``: classify at most this many faces in this frame (None: all). The others, their
        boxes moved to this frame's, keep their latest answer: a new face is always read, then those
        whose answer is oldest, so with 4 faces and a budget of 2 each face is read every other
        frame (what lets the webcam loop keep its frame rate with several faces)."""
        frame = check_image(frame)
        gray = to_gray(frame)
        boxes = detect_faces(self.detector, frame, gray) if boxes is None else boxes
        tracks = self.tracker.update(boxes)
        new = [i for i, t in enumerate(tracks) if t.probabilities is None]  # always read: never shown unread
        oldest = sorted((i for i, t in enumerate(tracks) if t.probabilities is not None), key=lambda i: tracks[i].answered)
        chosen = sorted(new + (oldest if budget is None else oldest[:max(budget - len(new), 0)]))
        native = self._native(gray, [boxes[i] for i in chosen])
        answers = self.ensemble.answer(native, self.prior)  # one pass for every face without a resting face
        for i, face_native, probs in zip(chosen, native, answers):
            track = tracks[i]
            track.native = smooth(track.native, face_native, self.smoothing)
            if track.resting_face is not None:
                probs = self.ensemble.answer(face_native[None], self.prior, track.resting_face)[0]
            track.probabilities = smooth(track.probabilities, probs, self.smoothing)
            track.answered = self.tracker.frames
        held = [t for t in self.tracker.tracks if 0 < t.missed <= self.hold and t.probabilities is not None
                and not any(iou(t.box, box) > 0 for box in boxes)]  # a box there now is that face, moved
        return [self._track_face(t) for t in tracks] + [self._track_face(t, held=True) for t in held]

    def set_resting_face(self, track_id: int, resting_face: RestingFace | None) -> None:
        """Read the track ``track_id`` relative to ``resting_face`` from now on (None: no longer).
        KeyError for a track that is not alive."""
        track = self.tracker.get(track_id)
        track.resting_face = resting_face
        track.probabilities = None  # the smoothed answer restarts in the new frame of reference

    def take_resting_face(self, track_ids: Iterable[int] | None = None) -> list[int]:
        """Take what each track (default: every live track) shows now, its smoothed probabilities,
        as that person's resting face; returns the track ids that took one."""
        wanted = None if track_ids is None else set(track_ids)
        taken = []
        for track in self.tracker.tracks:
            if (wanted is None or track.track_id in wanted) and track.native is not None and not track.missed:
                self.set_resting_face(track.track_id, self.ensemble.resting_face(track.native[None]))
                taken.append(track.track_id)
        return taken

    def clear_resting_face(self, track_ids: Iterable[int] | None = None) -> list[int]:
        """Forget the resting face of each track in ``track_ids`` (default: every live track that
        has one); returns the track ids cleared. KeyError for a given id that is not alive."""
        cleared = ([t.track_id for t in self.tracker.tracks if t.resting_face is not None]
                   if track_ids is None else list(track_ids))
        for track_id in cleared:
            self.set_resting_face(track_id, None)
        return cleared

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, list[Face]]]:
        """Frames in, (frame, faces) out, with tracking and smoothing; starts a fresh tracker."""
        self.tracker.reset()
        for frame in frames:
            yield frame, self.track(frame)

    def annotate(self, image: np.ndarray, faces: list[Face], bars: bool = True) -> np.ndarray:
        """A copy of ``image`` with boxes, labels and (optionally) per-emotion bars drawn."""
        return draw_faces(image, faces, self.classes, bars=bars)

    def _track_face(self, track: Track, held: bool = False) -> Face:
        assert track.probabilities is not None  # a track is read in the frame it appears in
        return self._face(track.box, track.probabilities, track.track_id, track.resting_face is not None,
                          held=held)

    def _face(self, box: Box, probs: np.ndarray, track_id: int | None = None, relative: bool = False,
              held: bool = False) -> Face:
        best = int(np.argmax(probs))
        x, y, w, h = box
        return Face(
            box=(int(x), int(y), int(w), int(h)),
            label=self.classes[best],
            score=float(probs[best]),
            probabilities={name: float(p) for name, p in zip(self.classes, probs)},
            track_id=track_id,
            relative=relative,
            held=held,
        )


IMAGE_TAKES = "a BGR (H, W, 3), BGRA or gray (H, W) uint8 array, as cv2.imread returns, or a PIL image"


def check_image(image: object) -> np.ndarray:
    """``image`` as a uint8 BGR, BGRA or gray array. What has one obvious meaning is converted: a
    single channel (H, W, 1) is squeezed, uint16 is scaled by 1/257, floats in [0, 1] by 255, a PIL
    image is taken as RGB (or gray). Otherwise TypeError / ValueError saying what was given."""
    if image is None:
        raise TypeError("image is None: did cv2.imread fail to read the file?")
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL.Image, without importing PIL
        gray = image.mode in ("L", "I;16", "I", "F", "1")
        array = np.asarray(image.convert("L" if gray else "RGB"))
        return array if gray else np.ascontiguousarray(array[..., ::-1])
    if isinstance(image, (str, Path)):
        raise TypeError(f"predict takes {IMAGE_TAKES}, not a path: read it with cv2.imread({str(image)!r})")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"predict takes {IMAGE_TAKES}, not {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.size == 0 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"predict takes {IMAGE_TAKES}; got an array of shape {image.shape}")
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    if image.dtype.kind == "f":
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError("a float image must hold values in [0, 1] (scaled to 0-255); got "
                             f"{float(np.nanmin(image)):g} to {float(np.nanmax(image)):g}")
        return np.round(image * 255).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"predict takes {IMAGE_TAKES}; got dtype {image.dtype}")
    return image
