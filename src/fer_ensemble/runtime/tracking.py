"""Stable face ids across frames (greedy IoU matching) and per-track probability smoothing (an
exponential moving average whose ``ema_weight`` is the newest frame's share)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_ensemble.runtime.calibration import RestingFace
from fer_ensemble.runtime.detection import Box, iou
from fer_ensemble.runtime.profile import Profile

EMA_WEIGHT = 0.5
"""The newest frame's weight in each track's moving average by default (``EmotionRecognizer``, the
video apps' ``--ema-weight``, batch videos with tracking, the server's stream): a still face's label
settles within a few frames, a change of expression shows within two or three."""


@dataclass
class Track:
    """One face followed across frames by ``IoUTracker``: its id (1, 2, ... since the tracker's last
    reset), its latest ``box`` (x, y, w, h in frame pixels, ints), how many frames in a row it went
    unmatched (``missed``), and what ``EmotionRecognizer.track`` keeps for it: the smoothed answer
    shown (``probabilities``, (C,) float32), the smoothed probabilities under FER+'s prior
    (``native``, what a resting face is taken from), the person's resting face, the frame whose
    crop gave the newest answer (``answered``) and, for an automatic resting face, the native
    probabilities of its calm frames (``calm``, at most ``CALM_KEEP``)."""

    track_id: int
    box: Box
    missed: int = 0
    probabilities: np.ndarray | None = None  # the smoothed answer shown
    native: np.ndarray | None = None  # smoothed probabilities under FER+'s prior (what a resting face is taken from)
    resting_face: RestingFace | None = None
    answered: int = -1  # the frame (tracker.frames) whose crop gave the newest answer; -1: none yet
    calm: list[np.ndarray] = field(default_factory=list)  # native probabilities of its calm frames, newest last
    auto_resting_face: bool = False  # its resting face is (to be) taken from its calm frames
    profile: Profile | None = None  # the person's profile, read through from now on
    embedding: np.ndarray | None = None  # the newest read crop's embedding (when a profile asks for it)


@dataclass
class IoUTracker:
    """Greedy IoU matching of each frame's boxes (x, y, w, h in frame pixels) to the live tracks:
    each box takes the id of the unmatched track it overlaps most (IoU >= ``min_iou``), a box
    matching none starts a new track (ids 1, 2, ... from the last ``reset``); a track survives
    ``max_missed`` frames without a match. Not thread-safe: one tracker per stream."""

    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1
    frames: int = 0  # frames seen (update calls) since the last reset

    def update(self, boxes: list[Box]) -> list[Track]:
        """The tracks for this frame's ``boxes`` (x, y, w, h in frame pixels), one per box in the
        same order, each with ``box`` set to its box and ``missed`` to 0; unmatched tracks count a
        miss and are dropped after ``max_missed``. Counts the frame (``frames``)."""
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
            track.box, track.missed = box, 0
            result.append(track)
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return result

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
