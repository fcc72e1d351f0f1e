"""One video's faces over time: ``FaceStream``, made by ``EmotionRecognizer.stream()``.

A recognizer is stateless and shared (its detector and ensemble serve every thread); a stream owns
everything that follows people across frames: the tracker (stable ``track_id`` s), each track's
smoothed answer, the hold of a face the detector missed, the calm frames of an automatic resting
face and every per-person setting (resting faces, profiles). As in MediaPipe Tasks' VIDEO and
LIVE_STREAM modes, each frame comes with its time (``update(frame, timestamp_s)``): smoothing, hold
and calm frames are measured in seconds, so ``--stride 2``, a 15 fps clip, a phone's variable frame
rate and a webcam that drops frames all smooth over the same time. One stream per video or
connection; a stream is not thread-safe, a recognizer is.

A frame's path through ``update``: its time (given, or the last plus ``frame_interval_s``; must
increase) -> the boxes (detected, or given) -> the tracker matches them to tracks -> the chosen
tracks' crops are read in one batch per member -> each answer is blended into its track's average
with the weight ``1 - exp(-dt / smoothing_s)`` (dt: the time since that track's last answer),
relative to its resting face and through its profile (with the blendshapes its track's face last
had, when the profile or the calibration reads them and the app gives faces geometry:
``keep_geometry``) -> calm answers feed an automatic resting
face -> tracks missed for at most ``hold_s`` are shown ``held``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from fer_ensemble.runtime.calibration import NEUTRAL, RestingFace
from fer_ensemble.runtime.detection import Box, iou
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.profile import Profile, blendshape_rows
from fer_ensemble.runtime.tracking import (
    EMA_WEIGHT,
    FRAME_INTERVAL_S,
    KEEP_S,
    IoUTracker,
    Track,
    smooth,
    smoothing_s_for,
    time_weight,
)

SMOOTHING_S = smoothing_s_for(EMA_WEIGHT)
"""Each track's smoothing time constant by default, about 48 ms: the newest answer's weight is
``1 - exp(-dt / SMOOTHING_S)``, which is ``EMA_WEIGHT`` (0.5) for frames 1/30 s apart, the
frame-based default this replaces."""
HOLD_S = 3 * FRAME_INTERVAL_S
"""How long a tracked face the detector misses is still shown, with its last box and answer and
``held`` set (a tracker's "max age"; 0: not at all), unless a box of this frame overlaps it (the
same face, moved too far for its track): one missed detection does not make its box blink out.
0.1 s: the 3 frames at 30 fps it was before. Its track lives on for ``StreamOptions.keep_s``
(``KEEP_S``, 1/6 s) or ``hold_s``, the longer."""

CALM_NEUTRAL = 0.8
"""A tracked face's frame is calm, a sample of that person's automatic resting face, when the
ensemble reads it neutral with at least this probability (its own answer, before any resting face).
A face that never rests (someone smiling throughout) gives no calm frame and keeps plain answers.
Chosen on taiwan-posed among 0.5, 0.6, 0.7, 0.8 and 0.9 (each performer's photos standing for a
track, one calm photo enough: 0.5 to 0.8 all within a point; 0.9 leaves most performers without a
calm photo), and measured there by ``fer-ensemble evaluate --resting-face performer
--calm-reference`` (docs/accuracy.md)."""
CALM_S = 5 * FRAME_INTERVAL_S
"""The time a track's calm frames must cover before its automatic resting face is used: 1/6 s, the
5 calm frames at 30 fps it was before (each calm frame counts the time since the track's previous
answer)."""
CALM_KEEP = 60
"""The newest calm frames an automatic resting face is the mean of (it follows slow changes of light)."""
AUTO_RESTING_FACE_HELP = (f"each face takes its own resting face from its calm frames (read neutral with p >= "
                          f"{CALM_NEUTRAL:g}, once they cover {CALM_S:.2f} s) and is then read relative to it; "
                          "a face that never rests keeps plain answers")
"""What the automatic resting face does, in the words of the commands' help and the server's API docs."""

FOLLOW_S = 2.0
"""How long a profile given to one face (``FaceStream.set_profile``) waits for that face when its
track is lost (the person turned away, or left the frame for a moment): the first new track within
this time whose box centre lies within the lost box's width of the lost box's centre takes it. A
stream's own ``options.profile`` needs no following: every new track takes it."""

TIME_TOLERANCE_S = 1e-6
"""Durations compared with ``hold_s`` and ``calm_s`` get this much slack: timestamps that add up
1/30 s steps land a rounding error either side of 0.1 s."""


def later_time(timestamp_s: float, previous_s: float | None) -> float | None:
    """``timestamp_s`` when it comes after ``previous_s`` (a stream's ``time_s``), else None (the
    stream's frame interval after the previous frame): a container's timestamp that repeats or goes
    back (a damaged file) does not stop a stream, whose timestamps must increase."""
    return timestamp_s if previous_s is None or timestamp_s > previous_s else None


def calm_faces(answers: np.ndarray) -> np.ndarray:
    """(N,) bool: which of (N, C) answers (``Ensemble.plain_answer``: before any calibration or resting
    face) read neutral with at least ``CALM_NEUTRAL``: the frames an automatic resting face is taken
    from. A calibration moves probability away from neutral (the ``posed`` preset's does), so judging
    its answers would find no calm frame at all."""
    return answers[..., NEUTRAL] >= CALM_NEUTRAL


@dataclass(frozen=True)
class StreamOptions:
    """A ``FaceStream``'s settings, durations in seconds (defaults: today's frame-based ones at 30 fps).

    ``smoothing_s``: each track's time constant (``SMOOTHING_S``, 48 ms; 0: no smoothing);
    ``hold_s``: how long a missed face is still shown (``HOLD_S``, 0.1 s; 0: not at all);
    ``calm_s``: the calm time before an automatic resting face is used (``CALM_S``, 1/6 s);
    ``keep_s``: how long a track lives on unmatched, to be matched again with its id and state
    (``KEEP_S``, 1/6 s; at least ``hold_s``);
    ``auto_resting_face``: new tracks take a resting face from their calm frames; ``profile``: new
    tracks are read through this person's ``Profile``; ``prior_strength``: as
    ``EmotionRecognizer``'s (None: the recognizer's); ``frame_interval_s``: the time between
    frames given without a timestamp (1/30 s). ValueError for a negative or non-finite duration
    or a ``frame_interval_s`` that is not positive."""

    smoothing_s: float = SMOOTHING_S
    hold_s: float = HOLD_S
    calm_s: float = CALM_S
    keep_s: float = KEEP_S
    auto_resting_face: bool = False
    profile: Profile | None = None
    prior_strength: str | float | None = None
    frame_interval_s: float = FRAME_INTERVAL_S

    def __post_init__(self) -> None:
        for name in ("smoothing_s", "hold_s", "calm_s", "keep_s", "frame_interval_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "frame_interval_s" and value == 0):
                raise ValueError(f"{name} is a duration in seconds, {'> 0' if name == 'frame_interval_s' else '>= 0'}; "
                                 f"got {value}")

    @classmethod
    def from_ema_weight(cls, ema_weight: float, **options) -> StreamOptions:
        """The options whose smoothing gives the newest frame the weight ``ema_weight`` at 30 fps
        (``smoothing_s_for``; 1: none); ``options`` set the other fields."""
        return cls(smoothing_s=smoothing_s_for(ema_weight), **options)


class FaceReader(Protocol):
    """What a ``FaceStream`` needs of its recognizer (``EmotionRecognizer`` is one)."""

    @property
    def ensemble(self) -> Ensemble:
        """The ensemble that reads the faces (its classes, answers, resting faces and profiles)."""
        ...

    @property
    def prior_strength(self) -> float:
        """The prior strength answers are given under when the stream's options name none."""
        ...

    def find(self, image: object, boxes: list[Box] | None = None) -> tuple[np.ndarray, list[Box]]:
        """``image`` as a gray array and its face boxes (``boxes`` when given, else detected)."""
        ...

    def read(self, gray: np.ndarray, boxes: list[Box], embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The faces at ``boxes`` read in one batch: native probabilities and, if asked, embeddings."""
        ...


class FaceStream:
    """One video's tracked, smoothed faces (see the module's docstring); ``EmotionRecognizer.stream()``
    makes one. ``options`` (``StreamOptions``) may be replaced between frames
    (``dataclasses.replace``: the webcam's ``m`` key turns smoothing off); ``tracker`` holds the
    live tracks; ``time_s`` is the newest frame's time (None before the first). Not thread-safe:
    one stream per video or connection, any number of streams per recognizer. UserError for a
    bad prior strength, ProfileError for another ensemble's profile."""

    def __init__(self, reader: FaceReader, options: StreamOptions | None = None):
        self.reader = reader
        self.options = options or StreamOptions()
        strength = self.options.prior_strength
        self.prior_strength: float = reader.prior_strength if strength is None else reader.ensemble.prior_strength(strength)
        """The prior strength every answer of this stream is given under."""
        if self.options.profile is not None:
            reader.ensemble.check_profile(self.options.profile)
        self.tracker = IoUTracker(max_missed_s=max(self.options.keep_s, self.options.hold_s))
        """The stream's live tracks (``IoUTracker``: ids, boxes and each track's state)."""
        self.time_s: float | None = None
        """The newest frame's time in seconds (None before the first frame)."""
        self._lost: list[tuple[Profile, Box, float]] = []  # (profile, last box, when) of lost tracks
        self._geometry: dict[int, Face] = {}  # each track's latest face with geometry (keep_geometry)

    @property
    def classes(self) -> tuple[str, ...]:
        """The ensemble's class names, in the order of every probability vector."""
        return self.reader.ensemble.classes

    def update(self, frame: object, timestamp_s: float | None = None, boxes: list[Box] | None = None,
               budget: int | None = None) -> list[Face]:
        """One frame of the video (what ``EmotionRecognizer.predict`` takes) at ``timestamp_s``
        seconds (None: ``frame_interval_s`` after the previous frame, 0 for the first): its faces
        with stable ``track_id`` s (1, 2, ... from the stream's start, matched by IoU) and answers
        smoothed per track over time, then the tracked faces missed for at most ``hold_s``, with
        ``held`` set. ValueError when ``timestamp_s`` is not after the previous frame's.

        ``boxes``: this frame's face boxes when the caller detected them (the webcam's detector
        thread); they replace detection and update the tracker exactly as detected boxes would.

        ``budget``: classify at most this many faces in this frame (None: all). The others, their
        boxes moved to this frame's, keep their latest answer: a new face is always read, then those
        whose answer is oldest, so with 4 faces and a budget of 2 each face is read every other
        frame (what lets the webcam loop keep its frame rate with several faces)."""
        now = self._next_time(timestamp_s)
        gray, boxes = self.reader.find(frame, boxes)
        previous, self.time_s = self.time_s, now
        self.tracker.max_missed_s = max(self.options.keep_s, self.options.hold_s)  # options may have changed
        before = list(self.tracker.tracks)
        tracks = self.tracker.update(boxes, now)
        self._remember_lost(before, now)
        first_dt = self.options.frame_interval_s if previous is None else now - previous
        self._answer(gray, boxes, tracks, self._chosen(tracks, budget), first_dt)
        return [self._face(t) for t in tracks] + [self._face(t, held=True) for t in self._held(boxes)]

    def keep_geometry(self, faces: list[Face]) -> list[Face]:
        """``faces`` (this stream's latest ``update``, given geometry by ``add_geometry``): each live
        face's geometry is remembered for its track (the next ``update`` reads a profile holding
        blendshapes with them: ``Profile.blendshapes``), and a held face, shown from an earlier frame
        and given none, takes its track's latest (landmarks, pose, blendshapes, ``turned``), so
        that a face turned too far stays flagged while it is held. In place; returns ``faces``."""
        alive = {track.track_id for track in self.tracker.tracks}
        self._geometry = {i: face for i, face in self._geometry.items() if i in alive}
        for face in faces:
            if face.track_id is None:
                continue
            if not face.held:  # its newest geometry, or none: an older one would not fit its box
                if face.pose is not None:
                    self._geometry[face.track_id] = face
                else:
                    self._geometry.pop(face.track_id, None)
            elif face.held and face.pose is None and (last := self._geometry.get(face.track_id)) is not None:
                face.landmarks, face.pose, face.blendshapes, face.turned = (last.landmarks, last.pose,
                                                                            last.blendshapes, last.turned)
        return faces

    def _next_time(self, timestamp_s: float | None) -> float:
        if timestamp_s is None:
            return 0.0 if self.time_s is None else self.time_s + self.options.frame_interval_s
        timestamp_s = float(timestamp_s)
        if not math.isfinite(timestamp_s):
            raise ValueError(f"timestamp_s must be a finite number of seconds, not {timestamp_s}")
        if self.time_s is not None and timestamp_s <= self.time_s:
            raise ValueError(f"timestamps must increase: frame at {timestamp_s:g} s after one at {self.time_s:g} s "
                             "(a new video needs a new stream: recognizer.stream())")
        return timestamp_s

    @staticmethod
    def _chosen(tracks: list[Track], budget: int | None) -> list[int]:
        """The tracks read in this frame: every new one, then the longest-waiting within ``budget``."""
        new = [i for i, t in enumerate(tracks) if t.probabilities is None]  # always read: never shown unread
        oldest = sorted((i for i, t in enumerate(tracks) if t.probabilities is not None),
                        key=lambda i: tracks[i].answered)
        return sorted(new + (oldest if budget is None else oldest[:max(budget - len(new), 0)]))

    def _answer(self, gray: np.ndarray, boxes: list[Box], tracks: list[Track], chosen: list[int],
                first_dt: float) -> None:
        """Read the chosen tracks' crops in one batch and blend each answer into its track."""
        options, ensemble, now = self.options, self.reader.ensemble, self.time_s
        assert now is not None
        for i in chosen:
            if tracks[i].answered < 0:  # a new track takes the stream's settings, or a lost face's profile
                tracks[i].auto_resting_face = options.auto_resting_face
                tracks[i].profile = self._followed(tracks[i].box) or options.profile
        profiled = any(tracks[i].profile is not None for i in chosen)
        native, embeddings = self.reader.read(gray, [boxes[i] for i in chosen], profiled)
        shapes = self._kept_blendshapes([tracks[i] for i in chosen])
        answers = ensemble.answer(native, self.prior_strength, blendshapes=shapes)  # one pass for the plain faces
        calm = calm_faces(ensemble.plain_answer(native, self.prior_strength))
        for j, (i, face_native, probs) in enumerate(zip(chosen, native, answers)):
            track = tracks[i]
            dt = None if track.answered_s is None else now - track.answered_s
            weight = time_weight(dt, options.smoothing_s)
            track.native = smooth(track.native, face_native, weight)
            if track.auto_resting_face and calm[j]:
                self._add_calm_frame(track, face_native, first_dt if dt is None else dt)
            if track.resting_face is not None or track.profile is not None:
                embedding = None if embeddings is None else embeddings[j : j + 1]
                probs = ensemble.answer(face_native[None], self.prior_strength, track.resting_face,
                                        profile=track.profile, embeddings=embedding,
                                        blendshapes=None if shapes is None else shapes[j : j + 1])[0]
            track.probabilities = smooth(track.probabilities, probs, weight)
            track.answered, track.answered_s = self.tracker.frames, now

    def _kept_blendshapes(self, tracks: list[Track]) -> np.ndarray | None:
        """(N, 51) the tracks' latest blendshapes (``keep_geometry``: read on their previous frame;
        NaN rows: none kept) when the ensemble's calibration or one of their profiles reads them
        (``Calibration.blendshapes``, ``Profile.blendshapes``), else None."""
        calibration = self.reader.ensemble.calibration
        if ((calibration is None or calibration.blendshapes is None)
                and not any(t.profile is not None and t.profile.blendshapes is not None for t in tracks)):
            return None
        return blendshape_rows([self._geometry.get(track.track_id) for track in tracks])

    def _remember_lost(self, before: list[Track], now: float) -> None:
        """Keep, for ``FOLLOW_S``, the profile of each track that had one of its own and is gone now."""
        alive = {id(t) for t in self.tracker.tracks}
        self._lost = [lost for lost in self._lost if now - lost[2] <= FOLLOW_S + TIME_TOLERANCE_S]
        self._lost += [(t.profile, t.box, now) for t in before
                       if id(t) not in alive and t.profile is not None and t.profile is not self.options.profile]

    def _followed(self, box: Box) -> Profile | None:
        """The profile of a lost track whose box was near ``box`` (taken: it follows one face only)."""
        def distance(lost: Box) -> float:
            return math.hypot(box[0] + box[2] / 2 - lost[0] - lost[2] / 2, box[1] + box[3] / 2 - lost[1] - lost[3] / 2)

        near = [i for i, (_, lost, _) in enumerate(self._lost) if distance(lost) <= lost[2]]
        if not near:
            return None
        best = min(near, key=lambda i: distance(self._lost[i][1]))
        return self._lost.pop(best)[0]

    def _add_calm_frame(self, track: Track, native: np.ndarray, dt: float) -> None:
        """One more calm frame, ``dt`` seconds long, for ``track``'s automatic resting face, used
        once its calm frames cover ``calm_s``."""
        track.calm = [*track.calm[-(CALM_KEEP - 1):], native]
        track.calm_s += dt
        if track.calm_s >= self.options.calm_s - TIME_TOLERANCE_S:
            if track.resting_face is None:
                track.probabilities = None  # the smoothed answer restarts in the new frame of reference
            track.resting_face = self.reader.ensemble.resting_face(np.stack(track.calm))

    def _held(self, boxes: list[Box]) -> list[Track]:
        """The live tracks missed in this frame for at most ``hold_s`` and not overlapped by a box."""
        now = self.time_s
        assert now is not None
        return [t for t in self.tracker.tracks
                if t.missed and t.probabilities is not None and t.seen_s is not None
                and now - t.seen_s <= self.options.hold_s + TIME_TOLERANCE_S
                and not any(iou(t.box, box) > 0 for box in boxes)]  # a box there now is that face, moved

    def _face(self, track: Track, held: bool = False) -> Face:
        assert track.probabilities is not None  # a track is read in the frame it appears in
        return Face.from_probabilities(track.box, track.probabilities, self.classes, track_id=track.track_id,
                                       relative=track.resting_face is not None, held=held,
                                       profiled=track.profile is not None)

    def set_resting_face(self, track_id: int, resting_face: RestingFace | None) -> None:
        """Read the track ``track_id`` relative to ``resting_face`` from now on (None: no longer;
        with ``auto_resting_face``, the track then collects calm frames anew). KeyError for a track
        that is not alive."""
        track = self.tracker.get(track_id)
        track.resting_face = resting_face
        track.auto_resting_face = resting_face is None and self.options.auto_resting_face
        track.calm, track.calm_s = [], 0.0
        track.probabilities = None  # the smoothed answer restarts in the new frame of reference

    def take_resting_face(self, track_ids: Iterable[int] | None = None) -> list[int]:
        """Take what each track (default: every live track) shows now, its smoothed probabilities,
        as that person's resting face (the webcam's ``r`` key); returns the track ids that took one."""
        wanted = None if track_ids is None else set(track_ids)
        taken = []
        for track in self.tracker.tracks:
            if (wanted is None or track.track_id in wanted) and track.native is not None and not track.missed:
                self.set_resting_face(track.track_id, self.reader.ensemble.resting_face(track.native[None]))
                taken.append(track.track_id)
        return taken

    def set_auto_resting_face(self, on: bool) -> list[int]:
        """Turn the automatic resting face on or off for this stream, its live tracks included:
        on, every track without a resting face starts collecting calm frames; off, the tracks'
        automatic resting faces are dropped (one taken or set explicitly stays). Returns the track
        ids changed."""
        self.options = replace(self.options, auto_resting_face=on)
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

    def set_profile(self, track_id: int, profile: Profile | None) -> None:
        """Read the track ``track_id`` through ``profile`` from now on (None: no longer; new tracks
        take ``options.profile``). When the track is lost, the profile follows that face: a new
        track near where it was within ``FOLLOW_S`` takes it. KeyError for a track that is not
        alive; ProfileError for another ensemble's profile."""
        if profile is not None:
            self.reader.ensemble.check_profile(profile)
        track = self.tracker.get(track_id)
        track.profile = profile
        track.probabilities = None  # the smoothed answer restarts

    def forget_lost_profiles(self) -> None:
        """Drop the profiles of lost tracks waiting for their face (``FOLLOW_S``): after the caller
        changes every face's profile, none comes back to a returning face."""
        self._lost = []

    def reset(self) -> None:
        """Forget every track and the time: the stream starts over (ids from 1, any first timestamp)."""
        self.tracker.reset()
        self.time_s = None
        self._lost = []
        self._geometry = {}
