"""Reading and writing images without tracebacks: the pixel count read from the header before
decoding (``check_pixels``), HEIC / HEIF through pi-heif, EXIF orientation, one clear line for an
unreadable file; ``write_image`` refusing a name OpenCV cannot write."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_ensemble.errors import InputError, OutputError
from fer_ensemble.media.kinds import HEIF_EXTENSIONS, is_heif, is_video
from fer_ensemble.outputs import written_whole


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
    """Write ``image`` to ``path`` whole or not at all (``outputs.written_whole``: an earlier file
    there is replaced only by a complete one), or raise an OutputError that says why it could not be."""

    def write(partial: Path) -> None:
        try:
            written = cv2.imwrite(str(partial), image)
        except cv2.error as error:
            raise OutputError(f"{path}: cannot write ({error.err})") from None
        if not written:
            raise OutputError(f"{path}: cannot write (no permission, or the disk is full)")

    written_whole(path, write)
