"""Reading and writing user media (images, videos, folders, globs) without tracebacks: every
problem becomes one clear line. Shared by the apps, batch and evaluation."""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.errors import InputError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".avif", ".gif", ".tif",
                    ".tiff", ".jp2", ".pgm", ".ppm", ".pbm", ".pnm"}  # what this OpenCV build decodes
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
SAMPLES = Path(__file__).resolve().parent / "samples"


@dataclass
class Inputs:
    """What the user's paths, folders and globs name."""

    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # matched nothing
    skipped: Counter = field(default_factory=Counter)  # files in folders that are not images, by extension

    def describe_skipped(self) -> str | None:
        if not self.skipped:
            return None
        kinds = ", ".join(f"{ext or '(no extension)'} {n}" for ext, n in self.skipped.most_common())
        return (f"skipped {sum(self.skipped.values())} file(s) in folders whose extension is no image format "
                f"OpenCV reads: {kinds} (name a file to try it anyway)")


def expand_inputs(items: list[str], exclude: Path | None = None) -> Inputs:
    """Files from paths, folders (their images, sorted, recursively) and glob patterns. Folder scans
    leave out ``exclude`` (the output folder) and count the files they pass over."""
    found = Inputs()
    excluded = exclude.resolve() if exclude is not None else None

    def wanted(path: Path) -> bool:
        return excluded is None or not path.resolve().is_relative_to(excluded)

    for item in items:
        path = Path(item)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and wanted(p)):
                if child.suffix.lower() in IMAGE_EXTENSIONS:
                    found.files.append(child)
                elif not child.name.startswith("."):
                    found.skipped[child.suffix.lower()] += 1
        elif path.is_file():
            found.files.append(path)
        elif matches := sorted(glob.glob(item, recursive=True)):
            found.files += [Path(m) for m in matches if Path(m).is_file()]
        else:
            found.missing.append(item)
    return found


def open_video(path: Path) -> cv2.VideoCapture:
    """An opened capture of a video file, or an InputError that says what is wrong with it."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path}: not a readable video")
    return capture


class VideoFrames:
    """A video file's frames in order, as ``(index, frame)``, from ``start`` up to ``stop``
    (exclusive; None: to the end). ``fps`` is 25 when the file does not say, ``frame_count`` None
    when unknown; ``read`` counts the frames decoded so far; ``time_s`` is the frame just yielded's
    own timestamp in seconds (the container's, so a variable-frame-rate video keeps its timing;
    index / fps where the container gives none). The file is released at the end."""

    def __init__(self, path: Path, start: int = 0, stop: int | None = None):
        self.capture = open_video(path)
        self.fps: float = self.capture.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_count: int | None = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        if start:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        self.start, self.stop, self.read = start, stop, 0
        self.time_s = 0.0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        try:
            while self.stop is None or self.start + self.read < self.stop:
                ok, frame = self.capture.read()
                if not ok:
                    return
                self.read += 1
                index = self.start + self.read - 1
                stamp = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                self.time_s = stamp if stamp > 0 or index == 0 else index / self.fps
                yield index, frame
        finally:
            self.capture.release()


def read_image(path: Path, gray: bool = False) -> np.ndarray:
    """A BGR (or, with ``gray``, a grayscale) image, or an InputError that says what is wrong with
    the file."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if size == 0:
        raise InputError(f"{path}: empty file")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not a readable image (corrupt or not an image format)")
    return image


def writable_name(name: str) -> str:
    """``name``, or ``name`` with an extension OpenCV can encode added (``a.jfif`` -> ``a.jfif.jpg``,
    ``a`` -> ``a.png``): the full name is kept, so ``a.jfif`` and ``a.jpg`` never claim one output."""
    try:
        if cv2.haveImageWriter(name):
            return name
    except cv2.error:  # a codec this build has but disables (e.g. OpenEXR)
        pass
    path = Path(name)
    return name + (".jpg" if path.suffix.lower() == ".jfif" else ".png")


def write_image(path: Path, image: np.ndarray) -> None:
    """Write ``image`` to ``path``, or raise an InputError that says why it could not be."""
    try:
        written = cv2.imwrite(str(path), image)
    except cv2.error as error:
        raise InputError(f"{path}: cannot write ({error.err})") from None
    if not written:
        raise InputError(f"{path}: cannot write (no permission, or the disk is full)")
