"""A guided enrolment: the person in front of a camera shows each expression in turn, and their
``Profile`` is made from the frames it captures (the webcam's ``e`` key, the web page's "Enrol").

``GuidedEnrolment`` is the state machine, kept apart from any window or page: it is given each
frame with its time (``update(frame, time_s)``) and says what to show (``EnrolmentState``: the
expression asked for, a countdown, how many frames are captured, why the last one was refused).
Per expression, in ``EnrolmentOptions.classes`` order: a countdown of ``countdown_s`` (time to make
the face), then ``captures`` frames at least ``interval_s`` apart. A frame is refused, with the
reason, when it shows no face or several (the detector is run on that very frame), when the face
is blurred (``MIN_SHARPNESS``) or when it is the same picture as the last capture
(``MIN_CHANGE``: a frozen camera gives nothing new). ``redo()`` takes the current expression
again, or the previous one when the current has no capture yet. After the last expression,
``profile`` is fitted (``Profile.fit`` through ``Ensemble.profile``, each capture read at each of
``ENROL_FRAMINGS`` as ``EmotionRecognizer.enrol`` reads a photo) with its ``self_check``; the
caller saves it and hands it to its stream (``FaceStream.set_profile``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.runtime.detection import Box, iou
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.geometry import GeometryReader
from fer_ensemble.runtime.profile import Profile, blendshape_rows, require_fitting

ENROL_ORDER = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear")
"""The expressions a guided enrolment asks for, in this order: the easy ones first. Contempt is
left out (FER+ has few faces of it and people rarely pose it; the profile map still reads it);
``EnrolmentOptions(classes=...)`` asks for any others."""
CAPTURES = 3
"""Frames captured per expression by default: ``evaluate --enrol 2`` measures two photos of
different moments; three frames of one held expression cost a second."""
COUNTDOWN_S = 3.0
"""The time given to make each expression before its first capture."""
INTERVAL_S = 0.5
"""The least time between two captures of one expression."""
MIN_SHARPNESS = 60.0
"""A capture's face must have at least this variance of its Laplacian (the face crop at 64 x 64
gray pixels), else it is refused as blurred. Measured with ``sharpness``: taiwan-posed's faces
1389-1804, the sample photos' faces (64-252 pixels wide) 186-2841; the same taiwan-posed crops
blurred by a Gaussian of a 40th of the face's width 53-172, of a 25th 23-78."""
MIN_CHANGE = 1.0
"""A capture's face crop (64 x 64 gray) must differ from the last capture's by at least this mean
absolute difference (gray levels), else it is refused as the same picture: a frozen camera, or a
still image. A live camera's noise alone gives more (consecutive frames of the noisy user-case
video v3b: 4.7 at the 10th percentile)."""
CHECK_SIZE = 64
"""The side of the gray crop the sharpness and change checks read."""
ENROLLED_IOU = 0.3
"""The least overlap between the last captured face and a live track for that track to take the
new profile (a detector's boxes may lag a frame; someone else's face must not take it)."""


class EnrolmentReader(Protocol):
    """What a guided enrolment needs of its recognizer (``EmotionRecognizer`` is one)."""

    @property
    def ensemble(self) -> Ensemble:
        """The ensemble whose embeddings the profile is fitted on."""
        ...

    def find(self, image: object, boxes: list[Box] | None = None) -> tuple[np.ndarray, list[Box]]:
        """``image`` as a gray array and its face boxes (detected when ``boxes`` is None)."""
        ...

    def enrolment_face(self, gray: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """The face at ``box`` read at each enrolment framing: (C,) probabilities and (F, D) embeddings."""
        ...

    def check_crop(self, gray: np.ndarray, box: Box, size: int) -> np.ndarray:
        """The face at ``box`` as the recognizer frames it, resized to ``size`` x ``size`` gray pixels."""
        ...


@dataclass(frozen=True)
class EnrolmentOptions:
    """A guided enrolment's settings: the expressions asked for (``classes``, names of
    ``EMOTIONS``, in order), ``captures`` frames of each, ``countdown_s`` before the first capture
    of each and ``interval_s`` between captures (seconds), and the refusal thresholds
    ``min_sharpness`` and ``min_change`` (see ``MIN_SHARPNESS``, ``MIN_CHANGE``). ValueError for an
    unknown or repeated class, fewer than two classes, ``captures`` < 1 or a negative duration."""

    classes: tuple[str, ...] = ENROL_ORDER
    captures: int = CAPTURES
    countdown_s: float = COUNTDOWN_S
    interval_s: float = INTERVAL_S
    min_sharpness: float = MIN_SHARPNESS
    min_change: float = MIN_CHANGE

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in EMOTIONS]
        if unknown or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"classes: two or more different names of {', '.join(EMOTIONS)}; got {self.classes}")
        if self.captures < 1:
            raise ValueError(f"captures must be at least 1, got {self.captures}")
        for name in ("countdown_s", "interval_s", "min_sharpness", "min_change"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass
class EnrolmentState:
    """What a guided enrolment shows now. ``phase``: ``"countdown"`` (make the face; the first
    capture in ``remaining_s`` seconds), ``"capture"`` (hold it), ``"done"`` (``profile`` is ready)
    or ``"failed"`` (the profile could not be fitted: ``refused`` says why); ``expression`` asked for
    (None once done), its ``step`` (1-based) of ``steps``, ``captured`` of ``captures`` frames of it;
    ``refused``: why the newest capture was refused (None when it was not); ``box``: the face the
    newest capture read (x, y, w, h), None when there was none; ``message``: all of it in one line."""

    phase: str
    expression: str | None
    step: int
    steps: int
    captured: int
    captures: int
    remaining_s: float = 0.0
    refused: str | None = None
    box: Box | None = None

    @property
    def message(self) -> str:
        """The prompt in one line, as the webcam and the web page show it."""
        if self.phase == "done":
            return "enrolment done: the profile is in use"
        if self.phase == "failed":
            return f"enrolment failed: {self.refused}"
        head = f"{self.step}/{self.steps} show {self.expression}"
        if self.phase == "countdown":
            return f"{head} in {math.ceil(self.remaining_s)}"
        tail = f" - refused: {self.refused}" if self.refused else ""
        return f"{head}: hold it ({self.captured}/{self.captures}){tail}"

    def to_dict(self) -> dict:
        """The JSON form (the webcam's ``--no-window`` lines, the WebSocket replies)."""
        return {"phase": self.phase, "expression": self.expression, "step": self.step, "steps": self.steps,
                "captured": self.captured, "captures": self.captures, "remaining_s": round(self.remaining_s, 2),
                "refused": self.refused, "box": None if self.box is None else list(self.box),
                "message": self.message}


def enrolled_track(tracks, box: Box | None) -> int | None:
    """The id of the live track among ``tracks`` (a ``FaceStream``'s ``tracker.tracks``) that is the
    face an enrolment captured last, at ``box``: the one overlapping it most, by at least
    ``ENROLLED_IOU``; None when none does."""
    if box is None:
        return None
    scored = [(iou(t.box, box), t.track_id) for t in tracks if not t.missed]
    best = max(scored, default=(0.0, None))
    return best[1] if best[0] >= ENROLLED_IOU else None


def sharpness(crop: np.ndarray) -> float:
    """The variance of the Laplacian of a gray crop: low for a blurred face."""
    return float(cv2.Laplacian(crop.astype(np.float32), cv2.CV_32F).var())


def _picture(frame: object, gray: np.ndarray) -> np.ndarray:
    """The frame as the geometry reader takes it: the BGR or gray array itself, else ``gray``."""
    return frame if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim in (2, 3) else gray


@dataclass
class _Capture:
    label: int
    native: np.ndarray  # (C,)
    embeddings: np.ndarray  # (F, D)
    crop: np.ndarray  # (CHECK_SIZE, CHECK_SIZE) float32
    blendshapes: np.ndarray  # (51,), NaN: not read


class GuidedEnrolment:
    """One person's guided enrolment (see the module's docstring): ``update`` per frame, ``redo``
    on request, ``profile`` once ``state.phase`` is ``"done"``. ``reader``: the recognizer
    (``EmotionRecognizer``); ``fit``: makes the profile from (P, C) native probabilities, (P, F, D)
    embeddings and (P,) class indices, and with ``geometry`` the keyword ``blendshapes`` ((P, 51),
    NaN rows where none were read) (None: ``enrolled_profile`` with the reader's ensemble,
    which needs scikit-learn); ``geometry``: a ``GeometryReader`` (the app's, with ``--geometry``)
    that reads each captured face's blendshapes too, so the profile holds ``Profile.blendshapes``.
    ValueError for bad ``options`` (``EnrolmentOptions``); ProfileError when the members give no
    embeddings, or without ``fit`` when scikit-learn is missing."""

    def __init__(self, reader: EnrolmentReader, fit=None, options: EnrolmentOptions | None = None,
                 geometry: GeometryReader | None = None):
        if fit is None:
            from fer_ensemble.runtime.recognizer import enrolled_profile

            require_fitting()
            ensemble = reader.ensemble

            def fit(native: np.ndarray, embeddings: np.ndarray, labels: np.ndarray,
                    blendshapes: np.ndarray | None = None) -> Profile:
                return enrolled_profile(ensemble, native, embeddings, labels, blendshapes)

        self.reader, self.fit, self.geometry = reader, fit, geometry
        self.options = options or EnrolmentOptions()
        reader.ensemble.require_embeddings()
        self.labels = [EMOTIONS.index(c) for c in self.options.classes]
        self.captures: list[_Capture] = []
        self.step = 0  # index into labels
        self.started_s: float | None = None  # when the current expression's countdown began
        self.last_s: float | None = None  # the newest capture's time
        self.profile: Profile | None = None
        self.state = self._state("countdown")

    def update(self, frame: object, time_s: float) -> EnrolmentState:
        """One frame of the camera at ``time_s`` seconds: counts down, or captures the frame (or
        refuses it), and moves to the next expression once enough are captured; after the last,
        fits the profile. Returns the state to show."""
        if self.state.phase in ("done", "failed"):
            return self.state
        if self.started_s is None:
            self.started_s = time_s
        remaining = self.started_s + self.options.countdown_s - time_s
        if remaining > 0:
            self.state = self._state("countdown", remaining_s=remaining)
            return self.state
        if self.last_s is not None and time_s - self.last_s < self.options.interval_s:
            return self.state
        refused, box = self._capture(frame)
        if refused is None:
            self.last_s = time_s
        if refused is None and self._captured() >= self.options.captures:
            self._next(time_s, box)
        else:
            self.state = self._state("capture", refused=refused, box=box)
        return self.state

    def _capture(self, frame: object) -> tuple[str | None, Box | None]:
        """Capture ``frame``'s one face for the current expression: (None, its box), or (why not, box or None)."""
        gray, boxes = self.reader.find(frame)
        if not boxes:
            return "no face in view", None
        if len(boxes) > 1:
            return f"{len(boxes)} faces in view: only the person enrolling, please", None
        box = boxes[0]
        crop = self.reader.check_crop(gray, box, CHECK_SIZE).astype(np.float32)
        if sharpness(crop) < self.options.min_sharpness:
            return "the face is blurred: hold still, or more light", box
        if self.captures and np.abs(crop - self.captures[-1].crop).mean() < self.options.min_change:
            return "the same picture as the last capture (is the camera frozen?)", box
        native, embeddings = self.reader.enrolment_face(gray, box)
        shape = None if self.geometry is None else self.geometry.read(_picture(frame, gray), [box])[0]
        self.captures.append(_Capture(self.labels[self.step], native, embeddings, crop, blendshape_rows([shape])[0]))
        return None, box

    def _captured(self) -> int:
        return sum(c.label == self.labels[self.step] for c in self.captures)

    def _next(self, time_s: float, box: Box | None) -> None:
        """The next expression's countdown, or the profile after the last (``box``: the last capture's face)."""
        self.step += 1
        self.started_s, self.last_s = time_s, None
        if self.step < len(self.labels):
            self.state = self._state("countdown", remaining_s=self.options.countdown_s)
            return
        self.step = len(self.labels) - 1
        try:
            shapes = {} if self.geometry is None else {"blendshapes": np.stack([c.blendshapes for c in self.captures])}
            self.profile = self.fit(np.stack([c.native for c in self.captures]),
                                    np.stack([c.embeddings for c in self.captures]),
                                    np.array([c.label for c in self.captures]), **shapes)
        except ValueError as error:
            self.state = self._state("failed", refused=str(error))
            return
        self.state = self._state("done", box=box)

    def redo(self, time_s: float | None = None) -> str:
        """Take an expression again: the current one when it has a capture, else the previous one
        (after the last, the last). Its captures are dropped and its countdown starts at
        ``time_s`` (None: at the next frame). Returns the expression's name."""
        if self.state.phase in ("done", "failed"):
            self.profile = None
        elif self._captured() == 0 and self.step > 0:
            self.step -= 1
        label = self.labels[self.step]
        self.captures = [c for c in self.captures if c.label != label]
        self.started_s, self.last_s = time_s, None
        self.state = self._state("countdown", remaining_s=self.options.countdown_s)
        return EMOTIONS[label]

    def _state(self, phase: str, remaining_s: float = 0.0, refused: str | None = None,
               box: Box | None = None) -> EnrolmentState:
        done = phase in ("done", "failed")
        return EnrolmentState(phase, None if phase == "done" else EMOTIONS[self.labels[self.step]],
                              self.step + 1, len(self.labels), 0 if done else self._captured(),
                              self.options.captures, remaining_s, refused, box)
