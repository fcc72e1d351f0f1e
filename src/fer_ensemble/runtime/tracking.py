"""Stable face ids across frames (greedy IoU matching) and per-track probability smoothing (an
exponential moving average whose ``ema_weight`` is the newest frame's share; in a ``FaceStream``
that share comes from the time since the track's last answer: ``time_weight``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fer_ensemble.runtime.calibration import RestingFace
from fer_ensemble.runtime.detection import Box, iou
from fer_ensemble.runtime.profile import Profile

EMA_WEIGHT = 0.5
"""The newest frame's weight in each track's moving average by default (``EmotionRecognizer``, the
video apps' ``--ema-weight``, batch videos with tracking, the server's stream): a still face's label
settles within a few frames, a change of expression shows within two or three."""
FRAME_INTERVAL_S = 1 / 30
"""The time a frame stands for when its own is not known (30 fps): a ``FaceStream`` frame given
without a timestamp comes this long after the previous one, and the frame-based defaults
(``EMA_WEIGHT``, 3 frames of hold, 5 calm frames) are turned into seconds at this rate."""
KEEP_S = 5 * FRAME_INTERVAL_S
"""How long a ``FaceStream``'s track lives on without a match (to be matched again with its id,
smoothing and resting face): 1/6 s, the ``IoUTracker.max_missed`` of 5 frames at 30 fps."""


@dataclass
class Track:
    """One face followed across frames by ``IoUTracker``: its id (1, 2, ... since the tracker's last
    reset), its latest ``box`` (x, y, w, h in frame pixels, ints), how many frames in a row it went
    unmatched (``missed``) and the time it was last matched (``seen_s``), and what a ``FaceStream``
    keeps for it: the smoothed answer
    shown (``probabilities``, (C,) float32), the smoothed probabilities under FER+'s prior
    (``native``, what a resting face is taken from), the person's resting face, the frame whose
    crop gave the newest answer (``answered``, and its time ``answered_s``) and, for an automatic
    resting face, the native probabilities of its calm frames (``calm``, at most ``CALM_KEEP``) and
    the time they cover (``calm_s``)."""

    track_id: int
    box: Box
    missed: int = 0
    probabilities: np.ndarray | None = None  # the smoothed answer shown
    native: np.ndarray | None = None  # smoothed probabilities under FER+'s prior (what a resting face is taken from)
    resting_face: RestingFace | None = None
    answered: int = -1  # the frame (tracker.frames) whose crop gave the newest answer; -1: none yet
    answered_s: float | None = None  # that frame's time, seconds (None: none yet)
    seen_s: float | None = None  # the time of the last frame whose boxes matched it, seconds
    calm: list[np.ndarray] = field(default_factory=list)  # native probabilities of its calm frames, newest last
    calm_s: float = 0.0  # the time its calm frames cover (each the time since the track's answer before it)
    auto_resting_face: bool = False  # its resting face is (to be) taken from its calm frames
    profile: Profile | None = None  # the person's profile, read through from now on
    embedding: np.ndarray | None = None  # the newest read crop's embedding (when a profile asks for it)


@dataclass
class IoUTracker:
    """Greedy IoU matching of each frame's boxes (x, y, w, h in frame pixels) to the live tracks:
    each box takes the id of the unmatched track it overlaps most (IoU >= ``min_iou``), a box
    matching none starts a new track (ids 1, 2, ... from the last ``reset``); a track survives
    ``max_missed`` frames without a match or, when ``max_missed_s`` is set and frames come with
    their time, that many seconds since its last match. Not thread-safe: one tracker per stream."""

    min_iou: float = 0.3
    max_missed: int = 5
    max_missed_s: float | None = None
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1
    frames: int = 0  # frames seen (update calls) since the last reset

    def update(self, boxes: list[Box], time_s: float | None = None) -> list[Track]:
        """The tracks for this frame's ``boxes`` (x, y, w, h in frame pixels), one per box in the
        same order, each with ``box`` set to its box, ``missed`` to 0 and ``seen_s`` to the frame's
        ``time_s``; unmatched tracks count a miss and are dropped after ``max_missed`` frames (or
        ``max_missed_s`` seconds: see the class). Counts the frame (``frames``)."""
        self.frames += 1
        pairs = sorted(
            ((iou(box, track.box), i, j) for i, box in enumerate(boxes) for j, track in enumerate(self.tracks)),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < self.min_iou:
                break
            if i in assigned or j in used:
                continue
            assigned[i] = self.tracks[j]
            used.add(j)
        for j, track in enumerate(self.tracks):
            if j not in used:
                track.missed += 1
        result = []
        for i, box in enumerate(boxes):
            if i in assigned:
                track = assigned[i]
            else:
                track = Track(self._next_id, box)
                self._next_id += 1
                self.tracks.append(track)
            track.box, track.missed, track.seen_s = box, 0, time_s
            result.append(track)
        self.tracks = [t for t in self.tracks if self._alive(t, time_s)]
        return result

    def _alive(self, track: Track, time_s: float | None) -> bool:
        if self.max_missed_s is None or time_s is None or track.seen_s is None:
            return track.missed <= self.max_missed
        return time_s - track.seen_s <= self.max_missed_s + 1e-6  # slack for sums of 1/30 s steps

    def get(self, track_id: int) -> Track:
        """The live track ``track_id``; KeyError if there is none."""
        for track in self.tracks:
            if track.track_id == track_id:
                return track
        raise KeyError(f"no live track {track_id}")

    def reset(self) -> None:
        """Forget every track; ids start again from 1 (a new video gets the same ids wherever it runs)."""
        self.tracks.clear()
        self._next_id, self.frames = 1, 0


def smooth(previous: np.ndarray | None, current: np.ndarray, ema_weight: float) -> np.ndarray:
    """One step of an exponential moving average: ``ema_weight * current + (1 - ema_weight) *
    previous`` for (C,) probability vectors (the result sums to one when both do). ``ema_weight`` is
    the newest frame's weight, in (0, 1]: 1 keeps only ``current`` (no smoothing), smaller values
    smooth more. ``current`` itself when there is no ``previous``."""
    if previous is None or ema_weight >= 1.0:
        return current
    return ema_weight * current + (1.0 - ema_weight) * previous


def time_weight(dt_s: float | None, smoothing_s: float) -> float:
    """The newest answer's weight in a moving average with time constant ``smoothing_s`` when it
    comes ``dt_s`` seconds after the previous one: ``1 - exp(-dt_s / smoothing_s)``, so an average
    forgets at the same rate whatever the frame rate (0 s: no smoothing, weight 1; no previous
    answer, None: weight 1). ``EMA_WEIGHT`` per frame at 30 fps is ``smoothing_s`` 48 ms."""
    if dt_s is None or smoothing_s <= 0.0:
        return 1.0
    return 1.0 - math.exp(-dt_s / smoothing_s)


def smoothing_s_for(ema_weight: float, interval_s: float = FRAME_INTERVAL_S) -> float:
    """The time constant that gives the newest frame the weight ``ema_weight`` (in (0, 1]) when
    frames come every ``interval_s`` seconds: ``-interval_s / ln(1 - ema_weight)``; 0 for 1 (no
    smoothing). ``time_weight(interval_s, smoothing_s_for(w))`` is ``w`` up to rounding."""
    if not 0.0 < ema_weight <= 1.0:
        raise ValueError(f"ema_weight is the newest frame's weight, in (0, 1]; got {ema_weight}")
    return 0.0 if ema_weight >= 1.0 else -interval_s / math.log(1.0 - ema_weight)
