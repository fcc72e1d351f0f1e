"""What bounds hostile input before it costs anything: the upload body counted as it streams (413),
an image's pixels read from its header before decoding (413) or refused as not an image (415), and
the worker pool that decoding and inference run on (503 when it is full)."""

from __future__ import annotations

import asyncio
import io
import re
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.formparsers import MultiPartParser

from fer_ensemble.errors import InputError, json_text
from fer_ensemble.media.images import TooManyPixels, check_pixels, heif_pixels, open_heif
from fer_ensemble.media.kinds import is_heif


class BodySizeLimit:
    """Pure ASGI middleware: 413 once a request body passes ``limit`` bytes, counted as it streams
    (a chunked upload without Content-Length included), before anything parses it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        state = {"seen": 0, "over": False, "started": False}

        async def counted_receive():
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _too_large(send, self.limit)
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def guarded_send(message):
            if state["over"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise


def megabytes(limit: int) -> str:
    """A size limit in bytes as the server's flag gives it, in MB of 2**20 bytes ("8 MB", "0.5 MB")."""
    return f"{limit / 2**20:.4g} MB"


async def _too_large(send, limit: int) -> None:
    body = json_text({"detail": f"upload larger than {megabytes(limit)} (--max-upload-mb)"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class ImageRejected(Exception):
    """An upload or frame refused before or while decoding; ``status`` is the HTTP answer."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header alone (Pillow reads no pixels here); None when the
    header declares more pixels than Pillow's own decompression-bomb bound."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError as error:  # beyond Pillow's own limit: its message has the count
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        return (int(pixels.group(1)), 1) if pixels else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageRejected(415, NOT_AN_IMAGE) from None


NOT_AN_IMAGE = "the bytes are not a decodable image (JPEG, PNG, WebP, BMP, GIF, TIFF...)"


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """A BGR image, after checking its pixel count against ``max_pixels`` from the header. HEIC /
    HEIF (iPhones' photos) is read through ``media.open_heif`` (the ``heic`` extra)."""
    if not data:
        raise ImageRejected(415, "empty upload: expected a JPEG, PNG or other image")
    try:
        heif = open_heif(data) if is_heif(data) else None
        size = heif[1] if heif else header_size(data)
        if size is None:  # beyond Pillow's own bound, its message without the count
            raise ImageRejected(413, f"image of more than 179 megapixels; this server takes up to "
                                     f"{max_pixels / 1e6:.1f} (serve --max-megapixels)")
        check_pixels(size, max_pixels, "this server takes (serve --max-megapixels)")  # the commands' check too
        image = heif_pixels(heif[0]) if heif else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except TooManyPixels as error:
        raise ImageRejected(413, str(error)) from None
    except InputError as error:  # a HEIF photo without the heic extra, or a damaged one
        raise ImageRejected(415, str(error)) from None
    if image is None:
        raise ImageRejected(415, NOT_AN_IMAGE)
    return image


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class WorkerPool:
    """Decoding and inference off the event loop: ``workers`` jobs at once, ``queue`` more waiting;
    beyond that ``run`` raises Busy at once rather than queueing without bound."""

    def __init__(self, workers: int, queue: int):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fer-worker")
        self.capacity = workers + queue
        self.pending = 0  # touched only on the event loop: no lock

    async def run(self, function, *args):
        if self.pending >= self.capacity:
            raise Busy
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        finally:
            self.pending -= 1


def keep_uploads_in_memory(max_upload_bytes: int) -> None:
    """Multipart uploads up to ``max_upload_bytes`` stay in memory, never spilled to temporary files.
    Starlette's spool size is a class attribute, so this is a process setting: ``serve`` sets it
    (and each of its ``--workers`` processes), not ``create_app``."""
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_upload_bytes + 1)
