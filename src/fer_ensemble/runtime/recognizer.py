"""The Python API: ``EmotionRecognizer().predict(image)`` -> faces with emotions (no torch).

Still images: detect, crop, classify all faces in one batch per member; ``predict`` keeps no state
and may be called from many threads. Video: ``stream()`` returns a ``FaceStream``
(``fer_ensemble.runtime.stream``) that owns one video's tracks (stable ``track_id``), per-track
smoothing over time, the hold of missed faces and every per-person setting; a recognizer serves any
number of streams, all sharing its detector and ensemble.

A person's resting face makes answers relative to how that face looks at rest
(``fer_ensemble.runtime.calibration.RestingFace``): ``resting_face(images)`` builds one from photos
or crops of the person at rest, ``predict(image, resting_face=...)`` uses it, and in a stream each
track can take one (``FaceStream.set_resting_face``, or ``take_resting_face`` from what the track
shows now: the webcam's ``r`` key) or, with ``auto_resting_face``, build its own from its calm frames.

The names this module kept for one release (``track``, ``stream(frames)``, the resting-face and
profile setters, ``tracker``, ``hold``, ``HOLD_FRAMES``, ``CALM_FRAMES``) are listed in
``fer_ensemble.runtime.deprecation.DEPRECATED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import UserError
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.calibration import RestingFace
from fer_ensemble.runtime.deprecation import renamed_keyword, warn_deprecated
from fer_ensemble.runtime.detection import (
    FACE_FRAMING,
    Box,
    FaceDetector,
    crop_faces,
    detect_faces,
    largest_face,
)
from fer_ensemble.runtime.detectors import create_detector
from fer_ensemble.runtime.drawing import draw_faces
from fer_ensemble.runtime.ensemble import WEIGHTS_DIR, Ensemble, load_calibration
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.geometry import FaceGeometry, GeometryReader, turned
from fer_ensemble.runtime.profile import ENROL_FRAMINGS, Profile, blendshape_rows
from fer_ensemble.runtime.stream import (  # noqa: F401 - CALM_* and AUTO_RESTING_FACE_HELP: their former home
    AUTO_RESTING_FACE_HELP,
    CALM_KEEP,
    CALM_NEUTRAL,
    FaceStream,
    StreamOptions,
    calm_faces,
)
from fer_ensemble.runtime.tracking import EMA_WEIGHT, FRAME_INTERVAL_S, IoUTracker, smoothing_s_for

SHIPPED_ENSEMBLE = WEIGHTS_DIR / "ensemble.json"
"""The ensemble file shipped in the package (written by ``fer-ensemble fit-ensemble``): what
``EmotionRecognizer()`` loads when given no ensemble."""
__all__ = ["SHIPPED_ENSEMBLE", "WEIGHTS_DIR", "EmotionRecognizer", "FaceStream", "StreamOptions", "load_ensemble"]


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


FORMER_FRAMES = {"HOLD_FRAMES": 3, "CALM_FRAMES": 5}
"""The frame counts these deprecated constants held (now ``HOLD_S`` and ``CALM_S``, in seconds)."""


def __getattr__(name: str) -> int:
    """The deprecated constants of ``FORMER_FRAMES``, with a deprecation warning."""
    if name in FORMER_FRAMES:
        warn_deprecated(name)
        return FORMER_FRAMES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def with_geometry(faces: list[Face], shapes: list[FaceGeometry | None]) -> list[Face]:
    """``faces``, each given the landmarks, pose and blendshapes of its ``FaceGeometry`` (same order;
    None: the model found no face there, left as it is) in place, and flagged ``turned`` past the
    readable range (``geometry.turned``)."""
    for face, shape in zip(faces, shapes):
        if shape is not None:
            face.landmarks, face.pose, face.blendshapes = shape.landmarks, shape.pose, shape.blendshapes
            face.turned = turned(shape.pose)
    return faces


class EmotionRecognizer:
    """Faces and their emotions in BGR or gray images: ``predict`` for stills, ``stream()`` for video.

    ``detector`` defaults to ``create_detector()`` (``fer_ensemble.runtime.detectors``): BlazeFace
    with the stills preset of ``fer-ensemble predict``; ``create_detector(BlazeFaceOptions.live())`` is
    the webcam app's live preset, and ``HaarFaceDetector()`` (``fer_ensemble.runtime.detection``) the
    OpenCV cascade.
    A recognizer keeps no per-image or per-video state: ``predict`` may be called from many
    threads at once (answers as from one thread; a shared Haar detector keeps a cascade per
    thread), and each video gets its own ``FaceStream`` from ``stream()``, any number of them
    sharing this recognizer's detector and ensemble (a stream itself is used from one thread).
    ``margin`` widens each detector box on every side and ``offset`` moves it down (fractions of
    the box side; the defaults, ``FACE_FRAMING``, frame faces as FER+ does). ``prior_strength`` is
    how much of FER+'s class prior is divided out: ``"ferplus"`` (0), ``"uniform"`` (1) or a number
    in [0, 1] (see ``fer_ensemble.prior``); None keeps the ensemble file's default; ``predict`` and
    ``stream`` may ask for another per call.
    ``calibration`` is ``"none"``, a preset name (``"posed"``), or a file that ``fer-ensemble
    adapt`` wrote; None keeps the ensemble file's own (the shipped one has none). The recognizer
    then reads through its own ``Ensemble.with_calibration`` copy, which shares the members' ONNX
    sessions: a passed ``Ensemble`` is not changed. ``threads`` bounds ONNX Runtime's threads when
    the ensemble is loaded here.

    The defaults of the streams it makes (``StreamOptions``; ``stream(**overrides)`` changes them
    per stream): ``ema_weight``, the newest frame's weight in each track's moving average at 30 fps
    (in (0, 1]; 1.0 turns smoothing off; turned into the time constant ``smoothing_s``);
    ``auto_resting_face``, each track without a resting face of its own takes one from its calm
    frames (``CALM_NEUTRAL``, ``CALM_S``), so a person is read against their own face at rest
    without anyone pressing a key; ``profile``, every face of ``predict`` and every new track is
    read through this person's ``Profile`` (``enrol`` makes one; ProfileError when it was made with
    another ensemble). ``geometry=True``: ``predict`` also gives each face its 478 landmarks, head
    pose and 51 blendshapes (MediaPipe's 52 but its ``_neutral`` baseline) (``fer_ensemble.runtime.geometry``; about 20 ms a face on one core).

    ``smoothing=`` and ``prior=`` are the deprecated names of ``ema_weight=`` and
    ``prior_strength=``; the deprecated methods and attributes are those of
    ``fer_ensemble.runtime.deprecation.DEPRECATED`` (each warns, and works for one release).

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
        geometry: bool = False,
        smoothing: float | None = None,
        prior: str | float | None = None,
    ):
        ema_weight = renamed_keyword(smoothing, ema_weight, "smoothing", "ema_weight", EMA_WEIGHT)
        prior_strength = renamed_keyword(prior, prior_strength, "prior", "prior_strength")
        if not 0.0 < ema_weight <= 1.0:
            raise UserError(f"ema_weight (smoothing) is the newest frame's weight, in (0, 1] (1: no smoothing); "
                            f"got {ema_weight}")
        self.ensemble = ensemble if isinstance(ensemble, Ensemble) else load_ensemble(ensemble, threads)
        if calibration is not None:  # its own ensemble object: one shared with others is not changed
            self.ensemble = self.ensemble.with_calibration(load_calibration(calibration))
        self.prior_strength: float = self.ensemble.prior_strength(prior_strength)
        """The prior strength in [0, 1] answers are given under unless a call asks for another."""
        self.detector = detector or create_detector()
        self.margin = margin
        self.offset = offset
        self.ema_weight: float = ema_weight
        """The newest frame's weight at 30 fps in the moving average of the streams made from now on."""
        self.auto_resting_face = auto_resting_face
        """Whether the streams made from now on start with the automatic resting face on."""
        if profile is not None:
            self.ensemble.check_profile(profile)
        self.profile = profile
        """A person's profile that ``predict`` and new streams read faces through by default."""
        self.geometry: GeometryReader | None = GeometryReader(threads) if geometry else None
        """Reads each face's landmarks, pose and blendshapes in ``predict`` (``geometry=True``); None: off."""
        self._legacy_stream: FaceStream | None = None  # the one stream of the deprecated track()

    @property
    def smoothing(self) -> float:
        """Deprecated name of ``ema_weight`` (a deprecation warning); reading and setting it work."""
        warn_deprecated("EmotionRecognizer.smoothing")
        return self.ema_weight

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        warn_deprecated("EmotionRecognizer.smoothing")
        self.ema_weight = value

    @property
    def prior(self) -> float:
        """Deprecated name of ``prior_strength`` (a deprecation warning)."""
        warn_deprecated("EmotionRecognizer.prior")
        return self.prior_strength

    @prior.setter
    def prior(self, value: str | float | None) -> None:
        warn_deprecated("EmotionRecognizer.prior")
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

    def find(self, image: object, boxes: list[Box] | None = None) -> tuple[np.ndarray, list[Box]]:
        """``image`` (what ``predict`` takes; TypeError / ValueError otherwise) as a gray uint8 array,
        and its face boxes: ``boxes`` when given, else detected (``detect``, left to right)."""
        image = check_image(image)
        gray = to_gray(image)  # once for the crops and a gray detector
        return gray, detect_faces(self.detector, image, gray) if boxes is None else boxes

    def read(self, gray: np.ndarray, boxes: list[Box], embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The faces at ``boxes`` of the gray image ``gray``, framed by ``margin`` and ``offset``, read
        in one batch per member: (N, C) probabilities under FER+'s prior, before any calibration
        (``Ensemble.answer`` applies it) and, with ``embeddings``,
        their (N, D) embeddings (``Ensemble.read_faces``)."""
        return self.ensemble.read_faces(crop_faces(gray, boxes, self.margin, self.offset), embeddings=embeddings)

    def classify(self, image: np.ndarray, boxes: list[Box], resting_face: RestingFace | None = None,
                 profile: Profile | None = None, *, prior_strength: str | float | None = None,
                 blendshapes: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (N, 8) float32 for the given boxes ([x, y, w, h] in pixels of ``image``,
        BGR or gray uint8), all faces in one batch per member, relative to ``resting_face`` and
        through ``profile`` if given (with the faces' (N, 51) ``blendshapes`` when read, NaN rows
        for none: ``Ensemble.answer``), under ``prior_strength`` (None: the recognizer's)."""
        native, embeddings = self.read(to_gray(image), boxes, profile is not None)
        strength = self.prior_strength if prior_strength is None else prior_strength
        return self.ensemble.answer(native, strength, resting_face, profile=profile, embeddings=embeddings,
                                    blendshapes=blendshapes)

    def enrol(self, images: Iterable[np.ndarray], labels: Iterable[str | int], crops: bool = False,
              **options) -> Profile:
        """A person's ``Profile`` from labelled photos of them (BGR or gray uint8, what ``predict``
        takes; the largest face of each, cropped at each of ``ENROL_FRAMINGS``) or, with ``crops``,
        face crops (used as they are); ``labels``: an emotion name or index per image, any subset of
        the eight classes, one or more each. ``options`` go to ``Profile.fit``. When the recognizer
        reads geometry (``geometry=True``) and the images are photos, each face's blendshapes are
        read too and the profile holds ``Profile.blendshapes`` (what ``predict`` reads a face through
        when it has its geometry). The profile's ``self_check`` holds, per class, how many of the
        enrolled photos a profile made without each in turn reads right. ValueError when no image
        shows a face or the counts differ; ProfileError for members without embeddings or without
        scikit-learn."""
        self.ensemble.require_embeddings()
        native, embeddings, indices, shapes = [], [], [], []
        for image, label in zip(images, labels, strict=True):
            image = check_image(image)
            gray = to_gray(image)
            if crops:
                probabilities, embedding = self.ensemble.read_faces([gray])
            else:
                box = largest_face(self.detector, image, gray)
                if box is None:
                    continue
                probabilities, embedding = self.enrolment_face(gray, box)
                shapes.append(self.enrolment_blendshapes(image, box))
            assert embedding is not None  # require_embeddings passed
            native.append(probabilities.reshape(-1, probabilities.shape[-1])[0])
            embeddings.append(embedding)
            indices.append(label if isinstance(label, (int, np.integer)) else EMOTIONS.index(label))
        if not native:
            raise ValueError("no face found in the enrolment image(s)")
        blendshapes = np.concatenate(shapes) if shapes and self.geometry is not None else None
        return enrolled_profile(self.ensemble, np.stack(native), np.stack(embeddings), np.asarray(indices),
                                blendshapes=blendshapes, **options)

    def enrolment_blendshapes(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(1, 51) float32 blendshapes of the face at ``box`` of ``image`` (BGR or gray uint8) when
        the recognizer reads geometry and finds it there, else a NaN row: what an enrolled face adds
        to its profile (``Profile.blendshapes``)."""
        shape = None if self.geometry is None else self.geometry.read(image, [box])[0]
        return blendshape_rows([shape])

    def enrolment_face(self, gray: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """The face at ``box`` of the gray uint8 image ``gray`` as enrolment reads it: cropped at
        each of ``ENROL_FRAMINGS`` (around the recognizer's ``margin`` and ``offset``) and read in
        one batch: its (C,) native probabilities (its own framing's) and (F, D) embeddings.
        ProfileError when the members give no embeddings."""
        self.ensemble.require_embeddings()
        crops = [crop_faces(gray, [box], self.margin + dm, self.offset + do)[0] for dm, do in ENROL_FRAMINGS]
        probabilities, embeddings = self.ensemble.read_faces(crops)
        assert embeddings is not None  # require_embeddings passed
        return probabilities[0], embeddings

    def check_crop(self, gray: np.ndarray, box: Box, size: int) -> np.ndarray:
        """The face at ``box`` of ``gray`` framed as the recognizer frames it, resized to ``size`` x
        ``size`` (uint8): what a guided enrolment checks for blur and change."""
        crop = crop_faces(gray, [box], self.margin, self.offset)[0]
        return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)

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
            box = largest_face(self.detector, image, gray)
            if box is not None:
                native.append(self.read(gray, [box])[0])
        if not native:
            raise ValueError("no face found in the resting-face image(s)")
        return self.ensemble.resting_face(np.concatenate(native), **options)

    def predict(self, image: np.ndarray, resting_face: RestingFace | None = None,
                profile: Profile | None = None, *, prior_strength: str | float | None = None) -> list[Face]:
        """Every face in a still image, left to right by box: ``Face`` objects with ``box`` (x, y, w,
        h in image pixels), ``label``, ``score`` and the eight ``probabilities`` (floats summing to
        1), ``track_id`` None (no tracking, no smoothing). Keeps no state: safe from many threads.
        ``image``: an (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) gray uint8 array, or what
        ``check_image`` converts (an (H, W, 1) array, 16-bit or [0, 1] float images, a PIL image);
        TypeError / ValueError naming what it takes otherwise.
        Each face is read relative to ``resting_face`` when given (one person's photos at rest),
        through ``profile`` (that person's enrolled expressions: ``enrol``; with its blendshapes
        when the recognizer reads geometry and the profile was enrolled with them), by default the
        recognizer's own ``profile``, and under ``prior_strength`` (``ferplus``, ``uniform`` or a
        number in [0, 1]; None: the recognizer's; UserError for another value)."""
        profile = profile or self.profile
        image = check_image(image)
        gray, boxes = self.find(image)
        shapes = None if self.geometry is None else self.geometry.read(image, boxes)
        probabilities = self.classify(gray, boxes, resting_face, profile, prior_strength=prior_strength,
                                      blendshapes=None if shapes is None else blendshape_rows(shapes))
        faces = [Face.from_probabilities(box, probs, self.classes, relative=resting_face is not None,
                                         profiled=profile is not None)
                 for box, probs in zip(boxes, probabilities)]
        if shapes is not None:
            with_geometry(faces, shapes)
        return faces

    def add_geometry(self, image: np.ndarray, faces: list[Face], boxes: list[Box] | None = None) -> list[Face]:
        """``faces`` of ``image`` (a BGR or gray uint8 array), each given its landmarks, pose and
        blendshapes in place when the recognizer reads geometry (``geometry=True``; a held face, shown
        from an earlier frame, is left without), flagged ``turned`` past the readable range
        (``geometry.turned``); unchanged otherwise. ``boxes``: the detector's boxes
        of ``faces`` (a turned one's roll stands its crop upright), else the faces' own. Returns
        ``faces``: what ``predict`` does for stills, and the video apps do with a stream's faces."""
        if self.geometry is None:
            return faces
        boxes = [face.box for face in faces] if boxes is None else boxes
        live = [(face, box) for face, box in zip(faces, boxes) if not face.held]
        with_geometry([face for face, _ in live], self.geometry.read(image, [box for _, box in live]))
        return faces

    def stream(self, frames: Iterable[np.ndarray] | None = None, *, options: StreamOptions | None = None,
               **overrides) -> FaceStream:
        """A new ``FaceStream`` for one video (tracks, smoothing and hold in seconds, per-person
        state), sharing this recognizer's detector and ensemble: ``stream.update(frame,
        timestamp_s)`` per frame. ``options`` (default: this recognizer's ``ema_weight``,
        ``auto_resting_face`` and ``profile`` as ``StreamOptions``), with any of its fields
        replaced by ``overrides`` (``recognizer.stream(hold_s=0.2, prior_strength=0.5)``).
        TypeError for an unknown field. ``stream(frames)``, a generator of ``(frame, faces)``, is
        deprecated (``fer_ensemble.runtime.deprecation``)."""
        if frames is not None:
            warn_deprecated("EmotionRecognizer.stream(frames)")
            return self._legacy_frames(frames)  # type: ignore[return-value]  # the former generator
        if options is None:
            options = StreamOptions.from_ema_weight(self.ema_weight, auto_resting_face=self.auto_resting_face,
                                                    profile=self.profile)
        return FaceStream(self, replace(options, **overrides))

    def annotate(self, image: np.ndarray, faces: list[Face], bars: bool = True) -> np.ndarray:
        """A BGR uint8 copy of ``image`` (what ``predict`` takes: a PIL image is stood up by its EXIF
        orientation, as ``predict`` read it) with each face's box (``Face.box``, pixels of
        ``image``), label and, with ``bars``, per-emotion bars drawn
        (``fer_ensemble.runtime.drawing.draw_faces``)."""
        return draw_faces(check_image(image), faces, self.classes, bars=bars)

    # --- the deprecated stream API (fer_ensemble.runtime.deprecation.DEPRECATED), one release ---

    def _legacy(self) -> FaceStream:
        """The one stream the deprecated methods share, its options following the recognizer's."""
        if self._legacy_stream is None:
            self._legacy_stream = self.stream()
        stream = self._legacy_stream
        stream.options = replace(stream.options, smoothing_s=smoothing_s_for(self.ema_weight),
                                 auto_resting_face=self.auto_resting_face, profile=self.profile)
        return stream

    def _legacy_frames(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, list[Face]]]:
        stream = self._legacy()
        stream.reset()
        for frame in frames:
            yield frame, stream.update(frame)

    def track(self, frame: np.ndarray, boxes: list[Box] | None = None, budget: int | None = None) -> list[Face]:
        """Deprecated: ``FaceStream.update`` of the recognizer's one legacy stream."""
        warn_deprecated("EmotionRecognizer.track")
        return self._legacy().update(frame, boxes=boxes, budget=budget)

    @property
    def tracker(self) -> IoUTracker:
        """Deprecated: the legacy stream's tracker."""
        warn_deprecated("EmotionRecognizer.tracker")
        return self._legacy().tracker

    @property
    def hold(self) -> int:
        """Deprecated: the legacy stream's hold in frames at 30 fps (``StreamOptions.hold_s``)."""
        warn_deprecated("EmotionRecognizer.hold")
        return round(self._legacy().options.hold_s / FRAME_INTERVAL_S)

    @hold.setter
    def hold(self, frames: int) -> None:
        warn_deprecated("EmotionRecognizer.hold")
        stream = self._legacy()
        stream.options = replace(stream.options, hold_s=frames * FRAME_INTERVAL_S)

    def set_resting_face(self, track_id: int, resting_face: RestingFace | None) -> None:
        """Deprecated: ``FaceStream.set_resting_face`` of the legacy stream."""
        warn_deprecated("EmotionRecognizer.set_resting_face")
        self._legacy().set_resting_face(track_id, resting_face)

    def take_resting_face(self, track_ids: Iterable[int] | None = None) -> list[int]:
        """Deprecated: ``FaceStream.take_resting_face`` of the legacy stream."""
        warn_deprecated("EmotionRecognizer.take_resting_face")
        return self._legacy().take_resting_face(track_ids)

    def set_auto_resting_face(self, on: bool) -> list[int]:
        """Deprecated: ``FaceStream.set_auto_resting_face`` of the legacy stream (and the default of new ones)."""
        warn_deprecated("EmotionRecognizer.set_auto_resting_face")
        changed = self._legacy().set_auto_resting_face(on)
        self.auto_resting_face = on
        return changed

    def clear_resting_face(self, track_ids: Iterable[int] | None = None) -> list[int]:
        """Deprecated: ``FaceStream.clear_resting_face`` of the legacy stream."""
        warn_deprecated("EmotionRecognizer.clear_resting_face")
        return self._legacy().clear_resting_face(track_ids)

    def set_profile(self, track_id: int, profile: Profile | None) -> None:
        """Deprecated: ``FaceStream.set_profile`` of the legacy stream."""
        warn_deprecated("EmotionRecognizer.set_profile")
        self._legacy().set_profile(track_id, profile)


def enrolled_profile(ensemble: Ensemble, native: np.ndarray, embeddings: np.ndarray, labels: np.ndarray,
                     blendshapes: np.ndarray | None = None, **options) -> Profile:
    """The ``Profile`` of P enrolled photos: their (P, C) native probabilities, (P, F, D) embeddings
    (F framings each), (P,) class indices and, when read, their (P, 51) ``blendshapes`` (NaN rows:
    none), with its ``self_check``; ``options`` go to ``Profile.fit``."""
    frames = embeddings.shape[1]
    shapes = None if blendshapes is None else np.repeat(blendshapes, frames, axis=0)
    profile = ensemble.profile(embeddings.reshape(-1, embeddings.shape[2]), np.repeat(labels, frames),
                               blendshapes=shapes, **options)
    profile.self_check = self_check(ensemble, native, embeddings, labels, profile, blendshapes)
    return profile


def self_check(ensemble: Ensemble, native: np.ndarray, embeddings: np.ndarray, labels: np.ndarray,
               profile: Profile, blendshapes: np.ndarray | None = None) -> dict:
    """Per enrolled class: how many of its P enrolled photos a profile fitted on the others reads as
    that class (each photo, all its framings, left out in turn; read as ``predict`` reads it: with
    its blendshapes when the profile holds ``Profile.blendshapes``), and the ensemble alone on the
    same photos. ``native`` (P, C), ``embeddings`` (P, F, D), ``labels`` (P,), ``blendshapes`` (P, 51)."""
    result = {}
    frames = embeddings.shape[1]
    shapes = blendshapes if profile.blendshapes is not None else None
    for c in profile.enrolled:
        mine = np.flatnonzero(labels == c)
        right = plain = 0
        for i in mine:
            others = np.arange(len(labels)) != i
            left_out = ensemble.profile(embeddings[others].reshape(-1, embeddings.shape[2]),
                                        np.repeat(labels[others], frames), c=profile.c, weight=profile.weight,
                                        map_weight=profile.map.get("weight", 0.0),
                                        blendshapes=None if shapes is None else np.repeat(shapes[others], frames, 0))
            face = None if blendshapes is None else blendshapes[i : i + 1]  # a calibration may read them too
            answer = ensemble.answer(native[i : i + 1], profile=left_out, embeddings=embeddings[i, :1], blendshapes=face)
            right += int(answer.argmax() == c)
            plain += int(ensemble.answer(native[i : i + 1], blendshapes=face).argmax() == c)
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
