"""One task with one recognizer: its face rows, frame counts and error, as plain data that crosses
process boundaries (local pool or Ray) unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fer_ensemble.errors import InputError, json_text
from fer_ensemble.media.decoder import decoder_log
from fer_ensemble.media.images import read_image
from fer_ensemble.media.inputs import is_uri
from fer_ensemble.media.kinds import extension
from fer_ensemble.media.video import VideoFrames
from fer_ensemble.runtime.detectors import create_detector, live_settings
from fer_ensemble.runtime.rows import FaceRow, face_rows
from fer_ensemble.runtime.stream import later_time
from fer_ensemble.runtime.tracking import EMA_WEIGHT


@dataclass
class BatchSettings:
    """What every worker builds its recognizers from (plain values: it is sent to each worker)."""

    ensemble: str | None = None
    prior_strength: float | None = None  # None: the ensemble file's default
    stride: int = 1
    track: bool = True
    ema_weight: float = EMA_WEIGHT  # videos with tracking, as `fer-ensemble video`
    auto_resting_face: bool = False  # videos with tracking: each track's resting face from its calm frames
    calibration: str | None = None  # none, a preset (posed) or a file adapt wrote; None: the ensemble file's own
    photo_detector: dict = field(default_factory=dict)  # create_detector's: the default detector's stills preset
    video_detector: dict = field(default_factory=live_settings)
    threads: int = 1  # ONNX Runtime and OpenCV threads per worker: one worker per core
    profile: str | None = None  # a person's profile file: every face read through it
    geometry: bool | None = None  # True: each face's pose, blendshapes and landmarks too (None: off, not recorded)


PHOTO_SETTINGS = ("version", "ensemble", "prior", "calibration", "photo_detector", "profile", "geometry")
"""What a photo's rows depend on: the keys of ``recorded_settings`` kept for a photo."""
VIDEO_SETTINGS = ("version", "ensemble", "prior", "calibration", "stride", "track", "ema_weight",
                  "auto_resting_face", "video_detector", "profile", "geometry")
"""What a video's rows depend on: the keys of ``recorded_settings`` kept for a video."""
RECORDED_WHEN_SET = ("profile", "geometry")
"""Settings recorded only when given: a summary written before they existed still matches a run without them."""


def recorded_settings(settings: BatchSettings, version: str) -> dict:
    """What the rows depend on, as plain JSON values, for a summary to record (``for_kind`` keeps a
    photo's or a video's): the package ``version``, a digest of the ensemble (its file, the member cards
    and model files it names) and of the calibration file, the prior, the stride, tracking, its
    smoothing and the resting face, both detectors' settings, a digest of the profile file when
    one is given and geometry when asked for. Threads are left out: the rows do not depend on them."""
    record = {"version": version, "ensemble": ensemble_digest(settings.ensemble),
              "prior": settings.prior_strength, "calibration": calibration_digest(settings.calibration),
              "stride": settings.stride, "track": settings.track,
              "ema_weight": settings.ema_weight if settings.track else None,
              "auto_resting_face": settings.auto_resting_face, "photo_detector": settings.photo_detector,
              "video_detector": settings.video_detector,
              "profile": None if settings.profile is None else _digest([Path(settings.profile)]),
              "geometry": True if settings.geometry else None}
    return json.loads(json_text(record))  # tuples as lists: as a summary read back holds them


def for_kind(record: dict, kind: str | None) -> dict:
    """The part of ``recorded_settings`` that a source of ``kind`` ("image" or "video") depends on."""
    return {key: record[key] for key in (VIDEO_SETTINGS if kind == "video" else PHOTO_SETTINGS)
            if key not in RECORDED_WHEN_SET or record.get(key) is not None}


def ensemble_digest(path: str | None) -> str:
    """A SHA-256 of the ensemble file at ``path`` (None: the shipped one) and of the files it names."""
    from fer_ensemble.runtime.classifier import resolve_member
    from fer_ensemble.runtime.ensemble import EnsembleSpec
    from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE

    file = Path(path) if path is not None else SHIPPED_ENSEMBLE
    spec = EnsembleSpec.read(file)
    files = [file]
    for member in spec.members:
        _, model, _ = resolve_member(spec.cards_folder(file) / member.card, member.variant)
        files += [spec.cards_folder(file) / member.card, model]
    return _digest(files)


def calibration_digest(value: str | None) -> str | None:
    """A SHA-256 of the calibration file ``value`` names (a preset or a path); None for the ensemble
    file's own, "none" for none."""
    from fer_ensemble.runtime.ensemble import CALIBRATION_PRESETS

    if value is None or value == "none":
        return value
    return _digest([CALIBRATION_PRESETS.get(value, Path(value))])


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@dataclass
class TaskResult:
    """What a worker returns for one task: its face rows (``FaceRow.to_dict()``), frames read and
    processed (0 for a photo), the video's fps (None for a photo) and the error that ended it, if any."""

    rows: list[dict]
    frames_read: int = 0
    frames_processed: int = 0
    fps: float | None = None
    error: str | None = None


@contextlib.contextmanager
def local_copy(source: str) -> Iterator[str]:
    """A local path for ``source``: itself, or a temporary download of a URI (OpenCV reads files)."""
    if not is_uri(source):
        yield source
        return
    import fsspec

    suffix = extension(source)
    with tempfile.TemporaryDirectory(prefix="fer-batch-") as folder:
        path = os.path.join(folder, "input" + suffix)
        with fsspec.open(source, "rb") as remote, open(path, "wb") as local:
            while chunk := remote.read(1 << 22):
                local.write(chunk)
        yield path


def failure(source: str, message: str) -> TaskResult:
    """A task that failed: one row holding the error (``FaceRow.failure``), and the error."""
    return TaskResult([FaceRow.failure(source, message).to_dict()], error=message)


class Worker:
    """Recognizers built once (per process or Ray actor); ``run`` does one task."""

    def __init__(self, settings: BatchSettings):
        from fer_ensemble.runtime.profile import Profile
        from fer_ensemble.runtime.recognizer import EmotionRecognizer, load_ensemble

        ensemble = load_ensemble(settings.ensemble, settings.threads)
        self.settings = settings
        profile = Profile.load(settings.profile) if settings.profile else None
        self.photos = EmotionRecognizer(ensemble, create_detector(settings.photo_detector, settings.threads),
                                        ema_weight=1.0, prior_strength=settings.prior_strength,
                                        calibration=settings.calibration, profile=profile,
                                        geometry=bool(settings.geometry))
        # the same calibrated ensemble object (its ONNX sessions loaded once) for the videos
        self.videos = EmotionRecognizer(self.photos.ensemble, create_detector(settings.video_detector, settings.threads),
                                        ema_weight=settings.ema_weight if settings.track else 1.0,
                                        prior_strength=settings.prior_strength,
                                        auto_resting_face=settings.auto_resting_face and settings.track, profile=profile)
        self.videos.geometry = self.photos.geometry  # one set of sessions; read before a profile's answer

    def run(self, task: dict) -> TaskResult:
        """One task (``Task.to_dict()``: a photo, or frames ``start``..``stop`` of a video, from a
        path or a URI): a ``TaskResult`` with one row per face (``row_columns``), frames read and
        processed, the video's fps. Never raises for a bad input: the error goes into the result
        (one row holding it), so one broken file does not stop a batch."""
        source = task["source"]
        try:
            with local_copy(source) as path:
                try:
                    if task["kind"] == "image":
                        return self._photo(source, path)
                    return self._video(source, path, task["start"], task["stop"])
                except InputError as error:  # the reason, without the (maybe temporary) local path
                    return failure(source, str(error).removeprefix(f"{path}: "))
        except Exception as error:  # noqa: BLE001 - one input's failure is a row, not a dead job
            return failure(source, f"{type(error).__name__}: {error}")

    def _photo(self, source: str, path: str) -> TaskResult:
        faces = self.photos.predict(read_image(Path(path)))
        return TaskResult(face_rows(source, 0, None, faces, bool(self.settings.geometry)), 1, 1)

    def _video(self, source: str, path: str, start: int, stop: int | None) -> TaskResult:
        frames = VideoFrames(Path(path), start, stop, decoder_log())  # the watch a worker inherits
        stream = self.videos.stream(frame_interval_s=1 / frames.fps)  # this task's own tracks, from id 1
        rows, processed = [], 0
        for index, frame in frames:
            if index % self.settings.stride == 0:
                if self.settings.track:  # a track's profile reads the blendshapes kept from its last frame
                    faces = stream.keep_geometry(self.videos.add_geometry(
                        frame, stream.update(frame, later_time(frames.time_s, stream.time_s))))
                else:
                    faces = self.videos.predict(frame)  # with geometry, read before the answer
                rows += face_rows(source, index, round(frames.time_s, 4), faces, bool(self.settings.geometry))
                processed += 1
        if frames.read == 0 and start == 0:
            raise InputError(f"{path}: no frame could be decoded")
        damaged = (None if frames.damaged_at_s is None else  # the rows are kept: the file is read on
                   f"the decoder reported errors from about {frames.damaged_at_s:.2f} s on (a damaged file)")
        return TaskResult(rows, frames.read, processed, frames.fps, damaged)
