"""Stable face ids across frames (greedy IoU matching) and per-track probability smoothing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_ensemble.runtime.calibration import RestingFace
from fer_ensemble.runtime.detection import Box, iou


@dataclass
class Track:
    track_id: int
    box: Box
    missed: int = 0
    probabilities: np.ndarray | None = None  # the smoothed answer shown
    native: np.ndarray | None = None  # smoothed probabilities under FER+'s prior (what a resting face is taken from)
    resting_face: RestingFace | None = None
    answered: int = -1  # the frame (tracker.frames) whose crop gave the newest answer; -1: none yet


@dataclass
class IoUTracker:
    """Each box takes the id of the unmatched track it overlaps most (IoU >= ``min_iou``);
    a track survives ``max_missed`` frames without a match."""

    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1
    frames: int = 0  # frames seen (update calls) since the last reset

    def update(self, boxes: list[Box]) -> list[Track]:
        """Tracks for ``boxes``, in the same order; counts the frame (``frames``)."""
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


def smooth(previous: np.ndarray | None, current: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential smoothing: ``alpha`` of the new probabilities (1 = no smoothing)."""
    if previous is None or alpha >= 1.0:
        return current
    return alpha * current + (1.0 - alpha) * previous
