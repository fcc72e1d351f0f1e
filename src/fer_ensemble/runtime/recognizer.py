"""The Python API: ``EmotionRecognizer().predict(image)`` -> faces with emotions (no torch).

Still images: detect, crop, classify all faces in one batch per member. Video: ``stream(frames)``
adds an IoU tracker (stable ``track_id``) and per-track smoothing of the probabilities so a still
face does not flicker between labels.

A person's resting face makes answers relative to how that face looks at rest
(``fer_ensemble.runtime.calibration.RestingFace``): ``resting_face(images)`` builds one from photos
or crops of the person at rest, ``predict(image, resting_face=...)`` uses it, and in a stream each
track can take one (``set_resting_face``, or ``take_resting_face`` from what the track shows now:
the webcam's ``r`` key) or, with ``auto_resting_face``, build its own from its calm frames.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import UserError
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.calibration import NEUTRAL, RestingFace
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
from fer_ensemble.runtime.ensemble import WEIGHTS_DIR, Ensemble, _renamed_keyword, load_calibration
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.profile import ENROL_FRAMINGS, Profile
from fer_ensemble.runtime.tracking import EMA_WEIGHT, IoUTracker, Track, smooth

SHIPPED_ENSEMBLE = WEIGHTS_DIR / "ensemble.json"
"""The ensemble file shipped in the package (written by ``fer-ensemble fit-ensemble``): what
``EmotionRecognizer()`` loads when given no ensemble."""
__all__ = ["SHIPPED_ENSEMBLE", "WEIGHTS_DIR", "EmotionRecognizer", "load_ensemble"]


def load_ensemble(path: str | Path | None = None, threads: int | None = None) -> Ensemble:
    """The ensemble file at ``path``, or the one shipped in the package (``SHIPPED_ENSEMBLE``),
    loaded with ``threads`` ONNX Runtime threads per member (``Ensemble.load``). UserError naming
    the file when it is missing (saying so when this install ships no weights) or damaged."""
    path = Path(path) if path is not None else SHIPPED_ENSEMBLE
    if not path.is_file():
        raise UserError(
            f"no ensemble file at {path}" + (" (this install ships no weights)" if path == SHIPPED_ENSEMBLE else "")
        )
    return Ensemble.load(path, threads=threads)


CALM_NEUTRAL = 0.8
"""A tracked face's frame is calm, a sample of that person's automatic resting face, when the
ensemble reads it neutral with at least this probability (its own answer, before any resting face).
A face that never rests (someone smiling throughout) gives no calm frame and keeps plain answers.
Chosen on taiwan-posed among 0.5, 0.6, 0.7, 0.8 and 0.9 (each performer's photos standing for a
track, one calm photo enough: 0.5 to 0.8 all within a point; 0.9 leaves most performers without a
calm photo), and measured there by ``fer-ensemble evaluate --resting-face performer
--calm-reference`` (docs/accuracy.md)."""

CALM_FRAMES = 5
"""Calm frames a track needs before its automatic resting face is used (a sixth of a second at 30 fps)."""
CALM_KEEP = 60
"""The newest calm frames an automatic resting face is the mean of (it follows slow changes of light)."""
AUTO_RESTING_FACE_HELP = (f"each face takes its own resting face from its calm frames (read neutral with p >= "
                          f"{CALM_NEUTRAL:g}, from the {CALM_FRAMES}th on) and is then read relative to it; a face "
                          "that never rests keeps plain answers")
"""What the automatic resting face does, in the words of the commands' help and the server's API docs."""


def calm_faces(answers: np.ndarray) -> np.ndarray:
    """(N,) bool: which of (N, C) answers (before any resting face) read neutral with at least
    ``CALM_NEUTRAL``: the frames an automatic resting face is taken from."""
    return answers[..., NEUTRAL] >= CALM_NEUTRAL


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
    ``ema_weight`` is the weight of the newest frame in the per-track exponential moving average
    of ``track`` and ``stream`` (in (0, 1]; 1.0 turns smoothing off; stills are never smoothed);
    ``margin`` widens each detector box on every side and ``offset`` moves it down (fractions of
    the box side; the defaults, ``FACE_FRAMING``, frame faces as FER+ does). ``prior_strength`` is
    how much of FER+'s class prior is divided out: ``"ferplus"`` (0), ``"uniform"`` (1) or a number
    in [0, 1] (see ``fer_ensemble.prior``); None keeps the ensemble file's default.
    ``calibration`` is ``"none"``, a preset name (``"posed"``), or a file that ``fer-ensemble
    adapt`` wrote; None keeps the ensemble file's own (the shipped one has none). It is set on the
    ensemble, so a passed ``Ensemble`` object is changed too. ``threads`` bounds ONNX Runtime's
    threads when the ensemble is loaded here.

    ``profile``: every face of ``predict`` and every new track of ``track`` and ``stream`` is read
    through this person's ``Profile`` (``enrol`` makes one; ``set_profile`` gives one track its
    own); ProfileError when it was made with another ensemble.

    ``auto_resting_face``: in ``track`` and ``stream``, each track without a resting face of its
    own takes one from its calm frames (``CALM_NEUTRAL``, ``CALM_FRAMES``), so a person is read
    against their own face at rest without anyone pressing a key; ``set_resting_face`` and
    ``take_resting_face`` override it for a track, ``clear_resting_face`` starts it over.

    ``smoothing=`` and ``prior=`` are the deprecated names of ``ema_weight=`` and
    ``prior_strength=`` (a DeprecationWarning; they will be removed).

    Raises UserError (a ValueError) for an ensemble file that is missing or damaged, a
    calibration that cannot be read, an ``ema_weight`` outside (0, 1], or a prior strength outside
    [0, 1] or one the ensemble's cards record no class prior for.
    """

    def __init__(
        self,
        ensemble: str | Path | Ensemble | None = None,
        detector: FaceDetector | None = None,
        margin: float = FACE_FRAMING["margin"],
        ema_weight: float = EMA_WEIGHT,
        threads: int | None = None,
        prior_strength: str | float | None = None,
        offset: float = FACE_FRAMING["offset"],
        calibration: str | Path | None = None,
        *,
        auto_resting_face: bool = False,
        profile: Profile | None = None,
        smoothing: float | None = None,
        prior: str | float | None = None,
    ):
        ema_weight = _renamed_keyword(smoothing, ema_weight, "smoothing", "ema_weight", EMA_WEIGHT)
        prior_strength = _renamed_keyword(prior, prior_strength, "prior", "prior_strength")
        if not 0.0 < ema_weight <= 1.0:
            raise UserError(f"ema_weight (smoothing) is the newest frame's weight, in (0, 1] (1: no smoothing); "
                            f"got {ema_weight}")
        self.ensemble = ensemble if isinstance(ensemble, Ensemble) else load_ensemble(ensemble, threads)
        if calibration is not None:
            self.ensemble.calibration = load_calibration(calibration)
        self.prior_strength: float = self.ensemble.prior_strength(prior_strength)
        """The prior strength in [0, 1] every answer is given under (see ``fer_ensemble.prior``)."""
        self.detector = detector or create_detector()
        self.margin = margin
        self.offset = offset
        self.ema_weight: float = ema_weight
        """The newest frame's weight in each track's moving average (1.0: no smoothing); may be
        changed between frames (the webcam's ``m`` key)."""
        self.hold = HOLD_FRAMES
        self.tracker = IoUTracker()
        self.auto_resting_face = auto_resting_face
        """Whether new tracks take a resting face from their calm frames (see the class docstring)."""
        if profile is not None:
            self.ensemble.check_profile(profile)
        self.profile = profile
        """A person's profile that new tracks are read through (``set_profile`` changes one track's)."""

    @property
    def smoothing(self) -> float:
        """Deprecated name of ``ema_weight`` (a DeprecationWarning); reading and setting it work."""
        warnings.warn("EmotionRecognizer.smoothing is deprecated: use ema_weight", DeprecationWarning, stacklevel=2)
        return self.ema_weight

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        warnings.warn("EmotionRecognizer.smoothing is deprecated: use ema_weight", DeprecationWarning, stacklevel=2)
        self.ema_weight = value

    @property
    def prior(self) -> float:
        """Deprecated name of ``prior_strength`` (a DeprecationWarning)."""
        warnings.warn("EmotionRecognizer.prior is deprecated: use prior_strength", DeprecationWarning, stacklevel=2)
        return self.prior_strength

    @prior.setter
    def prior(self, value: str | float | None) -> None:
        warnings.warn("EmotionRecognizer.prior is deprecated: use prior_strength", DeprecationWarning, stacklevel=2)
        self.prior_strength = self.ensemble.prior_strength(value)

    @property
    def classes(self) -> tuple[str, ...]:
        """The ensemble's class names, in the order of every probability vector (``EMOTIONS``)."""
        return self.ensemble.classes

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes ``(x, y, w, h)``: ints, pixels of ``image`` (top-left corner, width, height;
        a box may reach past the image's edge, e.g. a face cut by the top of a photo). The detector
        gets the image as given: an (H, W, 3) BGR or (H, W) gray uint8 array (BlazeFace reads colour,
        Haar converts to gray)."""
        return self.detector.detect(image)

    def classify(self, image: np.ndarray, boxes: list[Box], resting_face: RestingFace | None = None,
                 profile: Profile | None = None) -> np.ndarray:
        """Probabilities (N, 8) float32 for the given boxes ([x, y, w, h] in pixels of ``image``,
        BGR or gray uint8), all faces in one batch per member, relative to ``resting_face`` and
        through ``profile`` if given."""
        native, embeddings = self._read(to_gray(image), boxes, profile is not None)
        return self.ensemble.answer(native, self.prior_strength, resting_face, profile=profile, embeddings=embeddings)

    def _native(self, gray: np.ndarray, boxes: list[Box]) -> np.ndarray:
        return self.ensemble.native_probabilities(crop_faces(gray, boxes, self.margin, self.offset))

    def _read(self, gray: np.ndarray, boxes: list[Box], embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return self.ensemble.read_faces(crop_faces(gray, boxes, self.margin, self.offset), embeddings=embeddings)

    def enrol(self, images: Iterable[np.ndarray], labels: Iterable[str | int], crops: bool = False,
              **options) -> Profile:
        """A person's ``Profile`` from labelled photos of them (BGR or gray uint8, what ``predict``
        takes; the largest face of each, cropped at each of ``ENROL_FRAMINGS``) or, with ``crops``,
        face crops (used as they are); ``labels``: an emotion name or index per image, any subset of
        the eight classes, one or more each. ``options`` go to ``Profile.fit``. The profile's
        ``self_check`` holds, per class, how many of the enrolled photos a profile made without each
        in turn reads right. ValueError when no image shows a face or the counts differ;
        ProfileError for members without embeddings or without scikit-learn."""
        faces, indices = [], []
        for image, label in zip(images, labels, strict=True):
            image = check_image(image)
            gray = to_gray(image)
            boxes = [] if crops else detect_faces(self.detector, image, gray)
            if crops:
                faces.append([gray])
            elif boxes:
                box = max(boxes, key=lambda b: b[2] * b[3])
                faces.append([crop_faces(gray, [box], self.margin + dm, self.offset + do)[0]
                              for dm, do in ENROL_FRAMINGS])
            else:
                continue
            indices.append(label if isinstance(label, (int, np.integer)) else EMOTIONS.index(label))
        if not faces:
            raise ValueError("no face found in the enrolment image(s)")
        self.ensemble.require_embeddings()
        native, embeddings = [], []
        for crops_of_one in faces:
            probabilities, embedding = self.ensemble.read_faces(crops_of_one)
            assert embedding is not None  # require_embeddings passed
            native.append(probabilities[0])
            embeddings.append(embedding)
        return enrolled_profile(self.ensemble, np.stack(native), np.stack(embeddings), np.asarray(indices), **options)

    def set_profile(self, track_id: int, profile: Profile | None) -> None:
        """Read the track ``track_id`` through ``profile`` from now on (None: no longer). KeyError
        for a track that is not alive; ProfileError for another ensemble's profile."""
        if profile is not None:
            self.ensemble.check_profile(profile)
        track = self.tracker.get(track_id)
        track.profile = profile
        track.probabilities = None  # the smoothed answer restarts

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

    def predict(self, image: np.ndarray, resting_face: RestingFace | None = None,
                profile: Profile | None = None) -> list[Face]:
        """Every face in a still image, left to right by box: ``Face`` objects with ``box`` (x, y, w,
        h in image pixels), ``label``, ``score`` and the eight ``probabilities`` (floats summing to
        1), ``track_id`` None (no tracking, no smoothing). ``image``: an (H, W, 3) BGR, (H, W, 4)
        BGRA or (H, W) gray uint8 array, or what ``check_image`` converts (an (H, W, 1) array, 16-bit
        or [0, 1] float images, a PIL image); TypeError / ValueError naming what it takes otherwise.
        Each face is read relative to ``resting_face`` when given (one person's photos at rest) and
        through ``profile`` (that person's enrolled expressions: ``enrol``), by default the
        recognizer's own ``profile``."""
        profile = profile or self.profile
        image = check_image(image)
        gray = to_gray(image)  # once for the crops and a gray detector
        boxes = detect_faces(self.detector, image, gray)
        probabilities = self.classify(gray, boxes, resting_face, profile)
        return [self._face(box, probs, relative=resting_face is not None, profiled=profile is not None)
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
        for i in new:
            if tracks[i].answered < 0:  # a new track
                tracks[i].auto_resting_face = self.auto_resting_face
                tracks[i].profile = self.profile
        profiled = any(tracks[i].profile is not None for i in chosen)
        native, embeddings = self._read(gray, [boxes[i] for i in chosen], profiled)
        answers = self.ensemble.answer(native, self.prior_strength)  # one pass for every face read plainly
        for j, (i, face_native, probs) in enumerate(zip(chosen, native, answers)):
            track = tracks[i]
            track.native = smooth(track.native, face_native, self.ema_weight)
            if track.auto_resting_face and calm_faces(probs):
                self._add_calm_frame(track, face_native)
            if track.resting_face is not None or track.profile is not None:
                embedding = None if embeddings is None else embeddings[j : j + 1]
                probs = self.ensemble.answer(face_native[None], self.prior_strength, track.resting_face,
                                             profile=track.profile, embeddings=embedding)[0]
            track.probabilities = smooth(track.probabilities, probs, self.ema_weight)
            track.answered = self.tracker.frames
        held = [t for t in self.tracker.tracks if 0 < t.missed <= self.hold and t.probabilities is not None
                and not any(iou(t.box, box) > 0 for box in boxes)]  # a box there now is that face, moved
        return [self._track_face(t) for t in tracks] + [self._track_face(t, held=True) for t in held]

    def _add_calm_frame(self, track: Track, native: np.ndarray) -> None:
        """One more calm frame for ``track``'s automatic resting face, used from ``CALM_FRAMES`` on."""
        track.calm = [*track.calm[-(CALM_KEEP - 1):], native]
        if len(track.calm) >= CALM_FRAMES:
            if track.resting_face is None:
                track.probabilities = None  # the smoothed answer restarts in the new frame of reference
            track.resting_face = self.ensemble.resting_face(np.stack(track.calm))

    def set_resting_face(self, track_id: int, resting_face: RestingFace | None) -> None:
        """Read the track ``track_id`` relative to ``resting_face`` from now on (None: no longer;
        with ``auto_resting_face``, the track then collects calm frames anew). KeyError for a track
        that is not alive."""
        track = self.tracker.get(track_id)
        track.resting_face = resting_face
        track.auto_resting_face = resting_face is None and self.auto_resting_face
        track.calm = []
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

    def set_auto_resting_face(self, on: bool) -> list[int]:
        """Turn the automatic resting face on or off for this stream, its live tracks included:
        on, every track without a resting face starts collecting calm frames; off, the tracks'
        automatic resting faces are dropped (one taken or set explicitly stays). Returns the track
        ids changed."""
        self.auto_resting_face = on
        changed = []
        for track in self.tracker.tracks:
            if on and track.resting_face is None and not track.auto_resting_face:
                track.auto_resting_face = True
                changed.append(track.track_id)
            elif not on and track.auto_resting_face:
                self.set_resting_face(track.track_id, None)  # auto off now: no new calm frames either
                changed.append(track.track_id)
        return changed

    def clear_resting_face(self, track_ids: Iterable[int] | None = None) -> list[int]:
        """Forget the resting face of each track in ``track_ids`` (default: every live track that
        has one); returns the track ids cleared. KeyError for a given id that is not alive."""
        cleared = ([t.track_id for t in self.tracker.tracks if t.resting_face is not None]
                   if track_ids is None else list(track_ids))
        for track_id in cleared:
            self.set_resting_face(track_id, None)
        return cleared

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, list[Face]]]:
        """Frames in (each as ``track`` takes it), ``(frame, faces)`` out as ``track`` gives them,
        with tracking and smoothing; resets the tracker first, so ids start from 1 for every
        stream. Raises what ``track`` raises, at the frame that has the problem."""
        self.tracker.reset()
        for frame in frames:
            yield frame, self.track(frame)

    def annotate(self, image: np.ndarray, faces: list[Face], bars: bool = True) -> np.ndarray:
        """A BGR uint8 copy of ``image`` (what ``predict`` takes: a PIL image is stood up by its EXIF
        orientation, as ``predict`` read it) with each face's box (``Face.box``, pixels of
        ``image``), label and, with ``bars``, per-emotion bars drawn
        (``fer_ensemble.runtime.drawing.draw_faces``)."""
        return draw_faces(check_image(image), faces, self.classes, bars=bars)

    def _track_face(self, track: Track, held: bool = False) -> Face:
        assert track.probabilities is not None  # a track is read in the frame it appears in
        return self._face(track.box, track.probabilities, track.track_id, track.resting_face is not None,
                          held=held, profiled=track.profile is not None)

    def _face(self, box: Box, probs: np.ndarray, track_id: int | None = None, relative: bool = False,
              held: bool = False, profiled: bool = False) -> Face:
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
            profiled=profiled,
        )


def enrolled_profile(ensemble: Ensemble, native: np.ndarray, embeddings: np.ndarray, labels: np.ndarray,
                     **options) -> Profile:
    """The ``Profile`` of P enrolled photos: their (P, C) native probabilities, (P, F, D) embeddings
    (F framings each) and (P,) class indices, with its ``self_check``; ``options`` go to
    ``Profile.fit``."""
    frames = embeddings.shape[1]
    profile = ensemble.profile(embeddings.reshape(-1, embeddings.shape[2]), np.repeat(labels, frames), **options)
    profile.self_check = self_check(ensemble, native, embeddings, labels, profile)
    return profile


def self_check(ensemble: Ensemble, native: np.ndarray, embeddings: np.ndarray, labels: np.ndarray,
               profile: Profile) -> dict:
    """Per enrolled class: how many of its P enrolled photos a profile fitted on the others reads as
    that class (each photo, all its framings, left out in turn; read as ``predict`` reads it), and
    the ensemble alone on the same photos. ``native`` (P, C), ``embeddings`` (P, F, D), ``labels`` (P,)."""
    result = {}
    frames = embeddings.shape[1]
    for c in profile.enrolled:
        mine = np.flatnonzero(labels == c)
        right = plain = 0
        for i in mine:
            others = np.arange(len(labels)) != i
            left_out = ensemble.profile(embeddings[others].reshape(-1, embeddings.shape[2]),
                                        np.repeat(labels[others], frames), c=profile.c, weight=profile.weight)
            answer = ensemble.answer(native[i : i + 1], profile=left_out, embeddings=embeddings[i, :1])
            right += int(answer.argmax() == c)
            plain += int(ensemble.answer(native[i : i + 1]).argmax() == c)
        result[EMOTIONS[c]] = {"photos": int(len(mine)), "read_right": right, "ensemble_alone": plain}
    return result


IMAGE_TAKES = "a BGR (H, W, 3), BGRA or gray (H, W) uint8 array, as cv2.imread returns, or a PIL image"
"""What ``predict`` takes, in the words of ``check_image``'s errors."""


def check_image(image: object) -> np.ndarray:
    """``image`` as a uint8 BGR, BGRA or gray array. What has one obvious meaning is converted: a
    single channel (H, W, 1) is squeezed, uint16 is scaled by 1/257, floats in [0, 1] by 255, a PIL
    image is taken as RGB (or gray) and stood up as its EXIF orientation says, as ``cv2.imread``
    reads the same file. Otherwise TypeError / ValueError saying what was given."""
    if image is None:
        raise TypeError("image is None: did cv2.imread fail to read the file?")
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL.Image, without importing PIL
        return _from_pil(image)
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


EXIF_ORIENTATION = 0x0112
"""The EXIF tag that says how a camera held sideways or upside down stored the photo (EXIF 2.32,
section 4.6.4; 1: stored upright). Phones write 6 or 8 for portrait photos."""


def _from_pil(image) -> np.ndarray:
    """A PIL image as the (H, W) gray or (H, W, 3) BGR uint8 array ``cv2.imread`` gives for its
    file: turned as its EXIF orientation says, so that boxes are in the photo as it is shown. (Pillow's
    own ``rotate`` and ``transpose`` keep the tag: an image turned so must come through
    ``ImageOps.exif_transpose``, which drops it, or as an array.)"""
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        from PIL import ImageOps  # the caller has Pillow: it gave a PIL image

        image = ImageOps.exif_transpose(image)
    gray = image.mode in ("L", "I;16", "I", "F", "1")
    array = np.asarray(image.convert("L" if gray else "RGB"))
    return array if gray else np.ascontiguousarray(array[..., ::-1])
