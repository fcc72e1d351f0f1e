"""FastAPI app: the browser page, HTTP and WebSocket inference, model cards, health.

Images and frames are decoded in memory and never written to disk; uploads are capped before
they are parsed (413); bytes that are not an image get 415 with a reason; an optional bearer
token guards every endpoint (WebSockets and the page take it as ``?token=``); CORS stays closed
unless origins are given; each WebSocket processes at most ``max_fps`` frames a second and
always the newest one, dropping frames that arrive while it is busy.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from fastapi import (
    Depends, FastAPI, File, HTTPException, Query, UploadFile, WebSocket, WebSocketDisconnect, WebSocketException,
)
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartParser
from starlette.requests import HTTPConnection

from fer_ensemble import __version__
from fer_ensemble.runtime.detection import HaarFaceDetector
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.recognizer import EmotionRecognizer, load_ensemble

STATIC = Path(__file__).parent / "static"


@dataclass
class ServerSettings:
    ensemble: str | None = None
    token: str | None = None
    max_upload_bytes: int = 8 * 2**20
    cors_origins: list[str] = field(default_factory=list)
    max_fps: float = 15.0
    threads: int | None = None
    prior: float | None = None  # None: the ensemble file's default


PRIOR_DESCRIPTION = ("class prior of the answers: 'uniform' (rare emotions not given up), 'ferplus' "
                     "(FER+'s own mix) or a strength in [0, 1]; default: the server's")


class FaceOut(BaseModel):
    box: list[int] = Field(description="x, y, width, height in image pixels")
    label: str
    score: float
    probabilities: dict[str, float]
    track_id: int | None = None


class PredictOut(BaseModel):
    width: int
    height: int
    faces: list[FaceOut]


class Health(BaseModel):
    status: str
    version: str


class BodySizeLimit:
    """Pure ASGI middleware: 413 once a request body passes ``limit`` bytes, before parsing."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": f"upload larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def decode_image(data: bytes) -> np.ndarray:
    if not data:
        raise HTTPException(status_code=415, detail="empty upload: expected a JPEG, PNG or other image")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise HTTPException(status_code=415, detail="the bytes are not a decodable image (JPEG, PNG, BMP, WebP...)")
    return image


def prior_strength(ensemble: Ensemble, value: str | None, default: float | None) -> float:
    """A request's ``prior`` (ferplus, uniform or 0..1), else the server's; 422 when malformed."""
    try:
        return ensemble.prior_strength(value if value is not None else default)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None


class Recognizers:
    """One shared ensemble; a Haar detector per thread (OpenCV cascades are not shared across threads)."""

    def __init__(self, ensemble: Ensemble):
        self.ensemble = ensemble
        self._local = threading.local()

    def still(self, prior: float) -> EmotionRecognizer:
        cache = self._local.__dict__.setdefault("still", {})
        if prior not in cache:
            cache[prior] = EmotionRecognizer(self.ensemble, HaarFaceDetector(), smoothing=1.0, prior=prior)
        return cache[prior]

    def live(self, prior: float) -> EmotionRecognizer:
        """A new recognizer with its own tracker, for one WebSocket connection."""
        return EmotionRecognizer(self.ensemble, HaarFaceDetector.for_live(), smoothing=0.5, prior=prior)


def create_app(settings: ServerSettings | None = None, ensemble: Ensemble | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    ensemble = ensemble or load_ensemble(settings.ensemble, settings.threads)
    recognizers = Recognizers(ensemble)
    # keep multipart uploads in memory up to the limit: nothing spills into temporary files
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, settings.max_upload_bytes + 1)

    def check_token(connection: HTTPConnection) -> None:
        """Bearer header, or ``?token=`` (browsers cannot set headers on WebSockets or page loads)."""
        if settings.token is None:
            return
        header = connection.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else connection.query_params.get("token", "")
        if hmac.compare_digest(given.encode(), settings.token.encode()):
            return
        if connection.scope["type"] == "websocket":
            raise WebSocketException(code=1008, reason="missing or wrong token")
        raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="fer-ensemble", version=__version__, dependencies=[Depends(check_token)],
                  description="Facial expression recognition (FER+ emotions) with a ResNet50 + "
                              "MobileNetV2 ensemble.",
                  openapi_url=None, docs_url=None, redoc_url=None)  # re-added below, behind the token
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(status="ok", version=__version__)

    @app.get("/v1/model")
    def model() -> dict:
        """The ensemble file and every member's model card."""
        return {
            "ensemble": ensemble.config,
            "members": [m.classifier.card for m in ensemble.members],
        }

    @app.post("/v1/predict", response_model=PredictOut,
              responses={413: {"description": "upload too large"}, 415: {"description": "not an image"}})
    async def predict(
        file: UploadFile = File(..., description="an image (JPEG, PNG, ...)"),
        prior: str | None = Query(None, description=PRIOR_DESCRIPTION),
    ) -> PredictOut:
        strength = prior_strength(ensemble, prior, settings.prior)
        image = decode_image(await file.read())
        faces = await run_in_threadpool(lambda: recognizers.still(strength).predict(image))
        return PredictOut(width=image.shape[1], height=image.shape[0],
                          faces=[FaceOut(**f.to_dict()) for f in faces])

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs(connection: HTTPConnection) -> HTMLResponse:
        token = connection.query_params.get("token")
        return get_swagger_ui_html(openapi_url="/openapi.json" + (f"?token={token}" if token else ""),
                                   title="fer-ensemble API")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket, prior: str | None = Query(None, description=PRIOR_DESCRIPTION)) -> None:
        try:
            strength = prior_strength(ensemble, prior, settings.prior)
        except HTTPException as error:
            raise WebSocketException(code=1008, reason=str(error.detail)) from None
        await websocket.accept()
        await serve_stream(websocket, recognizers.live(strength), settings.max_fps)

    return app


async def serve_stream(websocket: WebSocket, recognizer: EmotionRecognizer, max_fps: float) -> None:
    """Receive JPEG frames, always process the newest, answer with its faces."""
    latest: dict = {}
    arrived = asyncio.Event()
    received = dropped = 0
    closed = False

    async def receive() -> None:
        nonlocal received, dropped, closed
        try:
            while True:
                data = await websocket.receive_bytes()
                received += 1
                if latest:
                    dropped += 1  # the previous frame was never processed: stale
                latest["frame"] = (received, data)
                arrived.set()
        except (WebSocketDisconnect, RuntimeError, KeyError):
            closed = True
            arrived.set()

    reader = asyncio.create_task(receive())
    interval = 1.0 / max_fps if max_fps > 0 else 0.0
    last_start = 0.0
    try:
        while True:
            await arrived.wait()
            arrived.clear()
            if closed:
                break
            wait = last_start + interval - time.perf_counter()
            if wait > 0:  # the per-connection frame-rate cap
                await asyncio.sleep(wait)
                if closed:
                    break
            if "frame" not in latest:  # already taken: it arrived while we waited for the cap
                continue
            number, data = latest.pop("frame")
            last_start = time.perf_counter()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                await websocket.send_text(json.dumps({"frame": number, "error": "not a decodable image"}))
                continue
            faces = await run_in_threadpool(recognizer.track, image)
            await websocket.send_text(json.dumps({
                "frame": number, "width": image.shape[1], "height": image.shape[0],
                "faces": [f.to_dict() for f in faces], "dropped": dropped,
                "ms": round((time.perf_counter() - last_start) * 1000, 1),
            }))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        reader.cancel()

