"""Reading videos: ``open_video`` and ``VideoFrames`` (each frame with its own time, the decoder's
errors counted), and telling a video from an image or a playlist by its first bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.errors import InputError
from fer_ensemble.media.decoder import DecoderLog
from fer_ensemble.media.images import JPEG_HEADER_BYTES, TooManyPixels, check_pixels, declared_size
from fer_ensemble.media.kinds import PLAYLIST_EXTENSIONS, extension, is_text


def open_video(path: Path) -> cv2.VideoCapture:
    """An opened capture of a video file, or an InputError that says what is wrong with it (an
    image file, which OpenCV plays as one frame, is checked as ``read_image`` checks it first:
    ``TooManyPixels``; a text file, which FFmpeg would play as a video of its characters, is not a
    video)."""
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a video file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with open(path, "rb") as file:  # an image played as a video: FFmpeg would call a huge one damaged
            head = file.read(JPEG_HEADER_BYTES)
        check_pixels(declared_size(head))
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    except TooManyPixels as error:
        raise TooManyPixels(f"{path}: {error}") from None
    if extension(str(path)) not in PLAYLIST_EXTENSIONS and is_text(head[:4096]):
        raise InputError(f"{path}: not a video (a text file)")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: not a readable video")
    return capture


class VideoFrames:
    """A video file's frames in order, as ``(index, frame)``, from ``start`` up to ``stop``
    (exclusive; None: to the end). ``fps`` is 25 when the file does not say, ``frame_count`` None
    when unknown; ``read`` counts the frames decoded so far; ``time_s`` is the frame just yielded's
    own timestamp in seconds (the container's, so a variable-frame-rate video keeps its timing;
    index / fps where the container gives none). The file is released at the end.

    ``damaged_at_s``: where the decoder reported errors (a damaged file: FFmpeg conceals them and
    repeats the last good picture), the time of the first frame read after the first report, in
    seconds; None when it reported none, or without a ``log`` (the process's ``DecoderLog``, which
    the commands make, ``decoder.watch_decoder_errors``, and give to the readers they open; the
    library's default is none). Reports arrive from the decoder's threads, so the time can lag the
    damage by a few frames."""

    def __init__(self, path: Path, start: int = 0, stop: int | None = None, log: DecoderLog | None = None):
        self.log = log
        self.damaged_at_s: float | None = None
        self.capture = open_video(path)
        self.fps: float = self.capture.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_count: int | None = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        if start:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        self.start, self.stop, self.read = start, stop, 0
        self.time_s = 0.0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        reported = self.log.sync() if self.log else 0
        try:
            while self.stop is None or self.start + self.read < self.stop:
                ok, frame = self.capture.read()
                if not ok:
                    return
                self.read += 1
                index = self.start + self.read - 1
                stamp = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                self.time_s = stamp if stamp > 0 or index == 0 else index / self.fps
                if self.damaged_at_s is None and self.log and self.log.sync() > reported:
                    self.damaged_at_s = self.time_s
                yield index, frame
        finally:
            self.capture.release()
            if self.damaged_at_s is None and self.log and self.log.settled_errors() > reported:
                self.damaged_at_s = self.time_s  # reported while the last frames were decoded


