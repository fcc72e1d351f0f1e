"""What a file is: image, HEIC, video or text, by its extension and by its first bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEIF_EXTENSIONS = {".heic", ".heif", ".hif"}
"""HEIC / HEIF, the photo format of iPhones (and of many Android phones): OpenCV does not decode
it, so it is read through pi-heif (libheif's decoder), the ``heic`` extra (``decode_heif``)."""


IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".avif", ".gif", ".tif",
                    ".tiff", ".jp2", ".pgm", ".ppm", ".pbm", ".pnm"} | HEIF_EXTENSIONS
"""File name endings read as images in folder and glob scans: what this OpenCV build decodes, and
HEIC / HEIF (a photo of those says how to read it when the ``heic`` extra is missing)."""


VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
"""File name endings read as videos in folder and glob scans."""


def extension(source: str) -> str:
    """The lower-case extension of a path or URI (a URI's query string left out), '' for none."""
    return Path(source.split("?")[0]).suffix.lower()


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
