"""Reading and writing user media (images, videos, folders, globs) without tracebacks: every
problem becomes one clear line. Shared by the apps, batch and evaluation."""

from __future__ import annotations

import atexit
import ctypes
import functools
import glob
import io
import os
import re
import struct
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_ensemble.errors import InputError, OutputError, UserError

HEIF_EXTENSIONS = {".heic", ".heif", ".hif"}
"""HEIC / HEIF, the photo format of iPhones (and of many Android phones): OpenCV does not decode
it, so it is read through pi-heif (libheif's decoder), the ``heic`` extra (``decode_heif``)."""
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".avif", ".gif", ".tif",
                    ".tiff", ".jp2", ".pgm", ".ppm", ".pbm", ".pnm"} | HEIF_EXTENSIONS
"""File name endings read as images in folder and glob scans: what this OpenCV build decodes, and
HEIC / HEIF (a photo of those says how to read it when the ``heic`` extra is missing)."""
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
"""File name endings read as videos in folder and glob scans."""
SAMPLES = Path(__file__).resolve().parent / "samples"
"""The sample media shipped in the package (the demo's photos and clip)."""


URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
"""A URI's start (a scheme of two or more characters, then ``://``): ``is_uri``'s test."""


def is_uri(source: str) -> bool:
    """Whether ``source`` is a URI (``s3://bucket/key``, ``gs://...``, ``file:///tmp/a.jpg``: a
    scheme of two or more characters, then ``://``), read through fsspec, rather than a local path.
    The one test every layer uses."""
    return URI_SCHEME.match(source) is not None


def extension(source: str) -> str:
    """The lower-case extension of a path or URI (a URI's query string left out), '' for none."""
    return Path(source.split("?")[0]).suffix.lower()


CLOUD_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
"""fsspec's file systems of the ``cloud`` extra, by URI scheme."""


def filesystem(uri: str):
    """fsspec's ``(file system, token, paths)`` for ``uri`` (its glob expanded); a UserError naming
    the package and the extra when the scheme's file system is not installed (fsspec raises a bare
    ImportError), or naming the scheme when fsspec knows none of that name. Needs fsspec (the
    ``batch`` extra)."""
    import fsspec

    try:
        return fsspec.get_fs_token_paths(uri)
    except ValueError as error:
        if "protocol not known" not in str(error).lower():
            raise
        raise UserError(f"{uri}: {uri.split('://', 1)[0]}:// is no URI scheme fsspec reads") from None
    except ImportError:
        scheme = uri.split("://", 1)[0]
        package = CLOUD_PACKAGES.get(scheme)
        install = f"pip install 'fer-ensemble[cloud]' ({package})" if package else "install fsspec's package for it"
        raise UserError(f"{uri}: reading {scheme}:// needs a file system that is not installed: {install}") from None


@dataclass
class Inputs:
    """What the user's paths, folders, globs and URIs name (``expand_inputs``).

    ``sources``: the files, in the order named (a folder's and a glob's sorted), each once: local
    paths as strings (an explicit file as the user spelled it) or URIs; ``missing``: items that
    name nothing; ``empty``: folders and globs that exist or match but hold no file of the kinds
    wanted; ``skipped``: the files such scans passed over, by extension (hidden files not
    counted)."""

    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    videos: bool = False  # videos were wanted besides images
    _seen: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def files(self) -> list[Path]:
        """``sources`` as paths (for local inputs: a URI is no path)."""
        return [Path(s) for s in self.sources]

    def add(self, sources: list[str]) -> None:
        """Append ``sources`` not already listed: a local file once however it is spelled (by its
        resolved path), a URI once by its text."""
        for source in sources:
            key = source if is_uri(source) else os.path.realpath(source)
            if key not in self._seen:
                self._seen.add(key)
                self.sources.append(source)

    def describe_skipped(self) -> str | None:
        """One line saying which files folder and glob scans passed over, by extension; None if none."""
        if not self.skipped:
            return None
        kinds = ", ".join(f"{ext or '(no extension)'} {n}" for ext, n in self.skipped.most_common())
        wanted = "image or video" if self.videos else "image"
        return (f"skipped {sum(self.skipped.values())} file(s) in folders and globs whose extension is no "
                f"{wanted} format OpenCV reads: {kinds} (name a file to try it anyway)")


def expand_inputs(items: list[str], exclude: Path | None = None, videos: bool = False,
                  remote: bool = False, into: Inputs | None = None) -> Inputs:
    """The files that ``items`` name: a file as named (any extension); a folder's files, recursively,
    and a glob's matches (``**`` recursive), sorted, keeping those whose extension is an image
    format OpenCV reads (``IMAGE_EXTENSIONS``; with ``videos``, or ``into.videos``, ``VIDEO_EXTENSIONS`` too) and
    counting the others in ``skipped``. Folder scans leave out ``exclude`` (an output folder) and
    what lies in it. With ``remote``, a URI (``is_uri``) is read through fsspec the same way
    (a folder, a glob or an object), and a scheme without its file system is a UserError; without
    it, a URI is looked up as a local path. Each file is listed once (``Inputs.add``). ``into``:
    an ``Inputs`` to add to (returned), e.g. one that a caller's manifests already filled."""
    found = into if into is not None else Inputs(videos=videos)
    wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS if found.videos else IMAGE_EXTENSIONS  # into's own, if given
    excluded = exclude.resolve() if exclude is not None else None

    def keep(names: list[tuple[str, str]]) -> list[str]:
        """(source, base name) pairs: the sources of a wanted kind; the others counted as skipped."""
        kept = []
        for source, name in names:
            if extension(source) in wanted:
                kept.append(source)
            elif not name.startswith("."):
                found.skipped[extension(source)] += 1
        return kept

    for item in items:
        if remote and is_uri(item):
            exists, listed = _expand_remote(item, keep)
        else:
            exists, listed = _expand_local(item, keep, excluded)
        if listed:
            found.add(listed)
        else:
            (found.empty if exists else found.missing).append(item)
    return found


def _expand_local(item: str, keep, excluded: Path | None) -> tuple[bool, list[str]]:
    path = Path(item)
    if path.is_dir():
        children = sorted(p for p in path.rglob("*") if p.is_file()
                          and (excluded is None or not p.resolve().is_relative_to(excluded)))
        return True, keep([(str(p), p.name) for p in children])
    if path.is_file():
        return True, [item]
    matches = sorted(glob.glob(item, recursive=True))
    return bool(matches), keep([(m, Path(m).name) for m in matches if Path(m).is_file()])


def _expand_remote(item: str, keep) -> tuple[bool, list[str]]:
    fs, _, paths = filesystem(item)
    protocol = item.split("://", 1)[0]

    def uri(path: str) -> str:
        return path if path.startswith(f"{protocol}://") else f"{protocol}://{path}"

    exists, listed = False, []
    for path in paths:
        if fs.isdir(path):
            exists = True
            listed += keep([(uri(p), p.rstrip("/").rsplit("/", 1)[-1]) for p in sorted(fs.find(path))])
        elif fs.exists(path):
            exists = True
            name = path.rstrip("/").rsplit("/", 1)[-1]
            listed += keep([(uri(path), name)]) if glob.has_magic(item) else [uri(path)]
    return exists, listed


WATCH_DECODER = "FER_ENSEMBLE_WATCH_DECODER"
"""Set (to 1) by ``watch_decoder_errors``; inherited by spawned workers, which then watch their own."""
FFMPEG_LINE = b"[OPENCV:FFMPEG:"
"""How OpenCV prefixes a message of FFmpeg's on stdout (with ``OPENCV_FFMPEG_DEBUG``)."""
DRAINED = b"\0fer-ensemble:stdout-drained\n"
"""The sentinel line ``DecoderLog.drain`` writes through the pipe and never passes on."""


@functools.cache
def _c_library() -> ctypes.CDLL | None:
    """The process's C library, opened once (it is flushed after every frame a watched video reads)."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def flush_c_streams() -> None:
    """Flush the C library's output buffers (OpenCV writes FFmpeg's messages with C's stdio, which
    holds them until its buffer fills when stdout is not a terminal)."""
    library = _c_library()
    if library is not None and hasattr(library, "fflush"):  # else the messages arrive when C flushes
        library.fflush(None)


class DecoderLog:
    """What FFmpeg's decoders report while videos are read. OpenCV prints FFmpeg's messages to
    the process's standard output with C's stdio (``[OPENCV:FFMPEG:16] ...``, from the decoder's
    own threads, so Python cannot catch them), and only when ``OPENCV_FFMPEG_DEBUG`` is set; this
    routes file descriptor 1 through a pipe, counts those lines (``errors``) and passes every other
    byte on unchanged. One per process."""

    def __init__(self) -> None:
        self.errors = 0
        self.closed = False  # the real stdout was closed by its reader (``_closed``)
        self.pid = os.getpid()
        sys.stdout.flush()
        flush_c_streams()
        self._stdout = os.dup(1)
        self._drained = threading.Event()
        self._drain_lock = threading.Lock()
        reader, writer = os.pipe()
        os.dup2(writer, 1)
        os.close(writer)
        self._thread = threading.Thread(target=self._pump, args=(reader,), daemon=True, name="decoder-log")
        self._thread.start()
        atexit.register(self.close)

    def _pump(self, reader: int) -> None:
        """Pass what arrives on ``reader`` on to the real stdout until the pipe ends; when the real
        stdout is closed (``| head -1`` exited), give it back to fd 1 and end (``_closed``)."""
        try:
            self._pass_on(reader)
        except OSError:  # BrokenPipeError, or a stdout otherwise gone
            self._closed()
        finally:
            os.close(reader)

    def _closed(self) -> None:
        """The real stdout was closed by its reader: fd 1 becomes it again, so the next write to stdout
        fails with BrokenPipeError where it is made (the command then ends quietly, exit 0) instead of
        filling a pipe that nobody reads any more (which blocked the writer for ever)."""
        self.closed = True
        os.dup2(self._stdout, 1)
        self._drained.set()

    def _pass_on(self, reader: int) -> None:
        pending = b""
        while chunk := os.read(reader, 65536):
            pending += chunk
            end = pending.rfind(b"\n")
            if end < 0 and len(pending) <= 65536:
                continue  # a line still arriving
            lines, pending = (pending[: end + 1], pending[end + 1 :]) if end >= 0 else (pending, b"")
            kept = []
            for line in lines.splitlines(keepends=True):
                if line.startswith(FFMPEG_LINE):
                    self.errors += 1
                elif DRAINED[:-1] in line:  # everything written before it has been passed on
                    kept.append(line.replace(DRAINED[:-1], b"").removesuffix(b"\n"))
                    os.write(self._stdout, b"".join(kept))
                    kept = []
                    self._drained.set()
                else:
                    kept.append(line)
            if kept:
                os.write(self._stdout, b"".join(kept))
        if pending:
            os.write(self._stdout, pending)

    def sync(self) -> int:
        """The errors reported so far, after flushing C's buffered output into the pipe (the count
        can still lag by the lines the pump has not read yet)."""
        flush_c_streams()
        return self.errors

    def settled_errors(self) -> int:
        """The errors reported by everything written so far: ``drain`` first, so no line still in
        the pipe is missed (what a video's last frames reported, say)."""
        self.drain()
        return self.errors

    def drain(self, timeout: float = 1.0) -> None:
        """Return once what was written to stdout so far has been passed on (so a line written to
        stderr next comes after it, as it would without the pipe)."""
        if not self._thread.is_alive() or os.getpid() != self.pid:
            return
        with self._drain_lock:
            sys.stdout.flush()
            flush_c_streams()
            self._drained.clear()
            os.write(1, DRAINED)
            self._drained.wait(timeout)

    def close(self) -> None:
        """Give fd 1 back (at exit): what is still in the pipe is passed on first."""
        if self._thread.is_alive() and os.getpid() == self.pid:
            sys.stdout.flush()
            flush_c_streams()
            os.dup2(self._stdout, 1)  # closes the pipe's last writer in this process: the pump ends
            self._thread.join(timeout=2)


_decoder_log: DecoderLog | None = None
_decoder_lock = threading.Lock()


def watch_decoder_errors() -> None:
    """Have FFmpeg report its decoding errors (only errors: ``AV_LOG_ERROR``) where ``VideoFrames``
    counts them instead of printing them (``DecoderLog``). A process setting, for the command layer; it applies to
    captures opened after it, and spawned worker processes inherit it."""
    os.environ["OPENCV_FFMPEG_DEBUG"] = "1"  # OpenCV passes FFmpeg's messages on only with this
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "16"  # AV_LOG_ERROR: errors, not FFmpeg's chatter
    os.environ[WATCH_DECODER] = "1"
    decoder_log()


def drain_stdout() -> None:
    """Wait until this process's stdout reached its destination, where a ``DecoderLog`` holds it in a
    pipe; flush it otherwise."""
    log = _decoder_log
    if log is not None and log.pid == os.getpid():
        log.drain()
    else:
        sys.stdout.flush()


def decoder_log() -> DecoderLog | None:
    """This process's ``DecoderLog`` when ``watch_decoder_errors`` is on (here or in the process
    that started this one), else None."""
    global _decoder_log
    if os.environ.get(WATCH_DECODER) != "1":
        return None
    with _decoder_lock:
        if _decoder_log is None or _decoder_log.pid != os.getpid():
            _decoder_log = DecoderLog()
        return _decoder_log


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
    seconds; None when it reported none, or when ``watch_decoder_errors`` is off (the library's
    default: only the commands turn it on). Reports arrive from the decoder's threads, so the time
    can lag the damage by a few frames."""

    def __init__(self, path: Path, start: int = 0, stop: int | None = None):
        self.log = decoder_log()
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


def read_image(path: Path, gray: bool = False) -> np.ndarray:
    """A BGR (or, with ``gray``, a grayscale) image, or an InputError that says what is wrong with
    the file: missing, unreadable (an OSError: no permission, a folder, an I/O error), empty, more
    pixels than OpenCV decodes (``TooManyPixels``, from the header, before decoding), damaged."""
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file")
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        if is_heif(data):
            heif, size = open_heif(data.tobytes())
            check_pixels(size)
            return heif_pixels(heif, gray)
        check_pixels(declared_size(data))
    except InputError as error:
        raise type(error)(f"{path}: {error}") from None
    return _decode(path, data, gray)


def _decode(path: Path, data: np.ndarray, gray: bool) -> np.ndarray:
    """``cv2.imdecode`` of a file's bytes, its failures (None, or an assertion for a size no header
    reader here declared: TIFF, JPEG 2000...) as an InputError naming ``path``."""
    try:
        image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    except cv2.error as error:
        if "CV_IO_MAX_IMAGE" in (error.err or ""):
            raise TooManyPixels(f"{path}: an image larger than OpenCV decodes (more than "
                                f"{OPENCV_MAX_PIXELS / 1e6:.1f} megapixels, or {OPENCV_MAX_SIDE} pixels a side)") from None
        raise InputError(f"{path}: not a readable image ({error.err})") from None
    if image is None:
        if is_video(path, data):
            raise InputError(f"{path}: a video, not a photo (fer-ensemble video reads videos)")
        raise InputError(f"{path}: not a readable image (corrupt or not an image format)")
    return image


VIDEO_SIGNATURES = ((0, b"RIFF", 8, b"AVI "), (0, b"\x1aE\xdf\xa3", 0, b""), (0, b"\x00\x00\x01\xba", 0, b""),
                    (0, b"FLV\x01", 0, b""), (0, b"0&\xb2u\x8ef\xcf\x11", 0, b""))
"""(offset, bytes, offset, bytes) pairs that start a video container: AVI, Matroska / WebM, MPEG
program stream, FLV, ASF / WMV. MP4 and QuickTime are told by their ``ftyp`` box (``is_video``)."""


def is_video(path: Path, data: bytes | np.ndarray) -> bool:
    """Whether a file that is no readable image is a video: a video extension (``VIDEO_EXTENSIONS``),
    an ``ftyp`` box of no image brand (MP4, QuickTime, 3GP), or a video container's signature."""
    head = bytes(data[:64])
    if extension(str(path)) in VIDEO_EXTENSIONS:
        return True
    if head[4:8] == b"ftyp":
        return head[8:12] not in HEIF_BRANDS | AVIF_BRANDS
    return any(head[a:a + len(x)] == x and head[b:b + len(y)] == y for a, x, b, y in VIDEO_SIGNATURES)


PLAYLIST_EXTENSIONS = {".m3u8", ".m3u", ".sdp", ".ffconcat"}
"""Text files that FFmpeg plays as video (a stream's playlist or description): ``open_video`` takes them."""


def is_text(head: bytes) -> bool:
    """Whether a file's first bytes are text (UTF-8 without NUL, a character cut at the end allowed):
    FFmpeg plays such a file as a video of its characters, but it is not one."""
    if not head or b"\x00" in head:
        return False
    for cut in range(4):  # the last character may be cut by the read
        try:
            head[:len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


OPENCV_MAX_PIXELS = 1 << 30
"""The most pixels (width x height, about 1074 megapixels) OpenCV decodes in one image: its
``CV_IO_MAX_IMAGE_PIXELS``; a larger one fails an assertion inside ``cv2.imdecode``. Every reader of
images checks the header against it first (``check_pixels``), the server against its own lower
``--max-megapixels`` too."""
OPENCV_MAX_SIDE = 1 << 20
"""The widest or tallest image OpenCV decodes, in pixels (``CV_IO_MAX_IMAGE_WIDTH`` / ``_HEIGHT``)."""


class TooManyPixels(InputError):
    """An image whose header declares more pixels than can be decoded (``check_pixels``): refused
    before decoding, like any unreadable input (exit 1); the server answers it with 413."""


def check_pixels(size: tuple[int, int] | None, limit: int | None = None,
                 taker: str = "OpenCV decodes") -> None:
    """Raise ``TooManyPixels`` when an image of ``size`` (width, height from its header; (pixels, 1)
    when a reader gives only the count; None: not known, nothing checked) has more pixels than
    ``limit`` (what ``taker`` takes, e.g. "this server takes (serve --max-megapixels)") or than
    OpenCV decodes (``OPENCV_MAX_PIXELS``, ``OPENCV_MAX_SIDE``), whichever is lower. The message
    reads "image of W x H = N megapixels, more than the L <taker>"."""
    if size is None:
        return
    width, height = size
    bound, by = ((limit, taker) if limit is not None and limit < OPENCV_MAX_PIXELS
                 else (OPENCV_MAX_PIXELS, "OpenCV decodes"))
    if width * height > bound:
        declared = f"{width * height / 1e6:.1f}" if height == 1 else f"{width}x{height} = {width * height / 1e6:.1f}"
        raise TooManyPixels(f"image of {declared} megapixels, more than the {bound / 1e6:.1f} {by}")
    if max(width, height) > OPENCV_MAX_SIDE and height != 1:
        raise TooManyPixels(f"image of {width}x{height} pixels, wider or taller than the {OPENCV_MAX_SIDE} "
                            "pixels OpenCV decodes")


def declared_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) as the header of a PNG, JPEG, GIF, BMP, WebP or PNM file declares it, read
    from the first bytes alone (no pixel decoded); None for another format or a header too short
    or damaged to say (the decoder then has its own say)."""
    head = bytes(data[:JPEG_HEADER_BYTES])
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return _pair(">II", head, 16)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _pair("<HH", head, 6)
    if head.startswith(b"BM") and len(head) >= 26:
        core = int.from_bytes(head[14:18], "little") == 12  # OS/2 1.x's header: 16-bit sides
        size = _pair("<HH" if core else "<ii", head, 18)
        return None if size is None else (abs(size[0]), abs(size[1]))  # height < 0: stored top-down
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if match := PNM_HEADER.match(head):
        return int(match.group(1)), int(match.group(2))
    return None


JPEG_HEADER_BYTES = 1 << 18
"""How far into a file ``declared_size`` looks: a JPEG's frame header follows its EXIF and other
application segments (a phone's, thumbnail included, well under this)."""
PNM_HEADER = re.compile(rb"P[1-6](?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)\s")
"""A PBM / PGM / PPM header up to its width and height (comments allowed between the fields)."""
JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
"""The JPEG markers that start a frame header (SOF0..SOF15 less DHT, JPG and DAC): it holds the size."""


def _pair(layout: str, head: bytes, offset: int) -> tuple[int, int] | None:
    end = offset + struct.calcsize(layout)
    return tuple(struct.unpack(layout, head[offset:end])) if len(head) >= end else None  # type: ignore[return-value]


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(head) and head[at] == 0xFF:
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in JPEG_FRAMES:
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            at += 2
        else:
            at += 2 + int.from_bytes(head[at + 2 : at + 4], "big")
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    kind = head[12:16]
    if kind == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if kind == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
"""The major brands of HEIF files (ISO/IEC 23008-12, annex B; ``mif1`` / ``msf1``: any image or
sequence file of the format, AVIF's too)."""
AVIF_BRANDS = {b"avif", b"avis"}
"""AVIF's brands (AV1 Image File Format, section 9): a HEIF file compatible with one is AVIF, which
OpenCV decodes itself."""


def is_heif(data: bytes | np.ndarray) -> bool:
    """Whether ``data`` starts as a HEIC / HEIF file that is not AVIF: an ``ftyp`` box whose major
    brand is a HEIF one and whose compatible brands name no AVIF one (ISO/IEC 14496-12, 4.3)."""
    if bytes(data[4:8]) != b"ftyp" or bytes(data[8:12]) not in HEIF_BRANDS:
        return False
    box = int.from_bytes(bytes(data[:4]), "big")
    compatible = bytes(data[16:min(box, 256)])
    return not any(compatible[i:i + 4] in AVIF_BRANDS for i in range(0, len(compatible) - 3, 4))


def open_heif(data: bytes) -> tuple[Any, tuple[int, int]]:
    """pi-heif's ``HeifFile`` for ``data`` (its pixels are decoded only when ``heif_pixels`` asks)
    and its (width, height) from the header. InputError when the ``heic`` extra is missing or the
    file cannot be read."""
    try:
        import pi_heif
    except ImportError:
        raise InputError("a HEIC/HEIF photo (the format of iPhones), which OpenCV does not read: "
                         "pip install 'fer-ensemble[heic]', or save it as JPEG") from None
    try:
        heif = pi_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return heif, tuple(heif.size)
    except Exception as error:  # noqa: BLE001 - libheif's errors arrive as ValueError, SyntaxError, IndexError...
        raise InputError(f"not a readable HEIC/HEIF photo ({error})") from None


def heif_pixels(heif: Any, gray: bool = False) -> np.ndarray:
    """The pixels of an ``open_heif`` file as ``cv2.imdecode`` gives other formats: BGR (or, with
    ``gray``, grayscale) uint8, as the photo is shown (libheif applies its rotation and mirroring).
    InputError when they cannot be decoded."""
    try:
        pixels = np.asarray(heif)
    except Exception as error:  # noqa: BLE001 - as in open_heif (a damaged stream: EOFError...)
        raise InputError(f"not a readable HEIC/HEIF photo ({error})") from None
    if pixels.ndim == 2:
        return pixels if gray else cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    code = {(3, False): cv2.COLOR_RGB2BGR, (4, False): cv2.COLOR_RGBA2BGR,
            (3, True): cv2.COLOR_RGB2GRAY, (4, True): cv2.COLOR_RGBA2GRAY}[pixels.shape[2], gray]
    return cv2.cvtColor(pixels, code)


def decode_heif(data: bytes, gray: bool = False) -> np.ndarray:
    """A HEIC / HEIF photo's pixels (``heif_pixels``); InputError as ``open_heif`` and ``heif_pixels``."""
    return heif_pixels(open_heif(data)[0], gray)


def writable_name(name: str) -> str:
    """``name``, or ``name`` with an extension OpenCV can encode added (``a.jfif`` -> ``a.jfif.jpg``,
    ``a.heic`` -> ``a.heic.jpg``, ``a`` -> ``a.png``): the full name is kept, so ``a.jfif`` and
    ``a.jpg`` never claim one output."""
    try:
        if cv2.haveImageWriter(name):
            return name
    except cv2.error:  # a codec this build has but disables (e.g. OpenEXR)
        pass
    path = Path(name)
    return name + (".jpg" if path.suffix.lower() in {".jfif", *HEIF_EXTENSIONS} else ".png")


def write_image(path: Path, image: np.ndarray) -> None:
    """Write ``image`` to ``path``, or raise an OutputError that says why it could not be."""
    try:
        written = cv2.imwrite(str(path), image)
    except cv2.error as error:
        raise OutputError(f"{path}: cannot write ({error.err})") from None
    if not written:
        raise OutputError(f"{path}: cannot write (no permission, or the disk is full)")
