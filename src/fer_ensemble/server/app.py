"""FastAPI app: the browser page, HTTP and WebSocket inference, model cards, health, offline docs.

Hostile input is bounded before it costs anything: upload bytes are counted as they stream (413,
with or without a Content-Length), an image's pixel count is read from its header before it is
decoded (413 above ``max_pixels``), bytes that are not an image get 415 with a reason. Decoding
and inference run on a bounded worker pool, never on the event loop, so ``/healthz`` answers
while heavy requests run; when every worker is busy and the queue is full, 503 with
``Retry-After``. Images are decoded in memory and never written to disk. An optional bearer
token guards every endpoint that touches the models (``/healthz``, ``/v1/...``), in the
``Authorization`` header; only the WebSocket, whose browser API cannot set headers, may take it as
``?token=`` (``serve`` keeps it out of the logs). The page, ``/docs`` and ``/openapi.json`` hold
no data and load without it: the page has a token field, ``/docs`` its Authorize button. CORS
stays closed unless origins are given, and a browser page of another site may not open the
WebSocket (``check_origin``). Each WebSocket processes at most ``max_fps`` frames a second and always
the newest one, dropping frames that arrive while it is busy; a text message that is not JSON or
an oversized message closes it with 1003 / 1009 and a reason, a refused one is closed with 1008 and
its reason; beyond ``max_streams`` open streams a new one is closed with 1013 (try again later) and
its reason. Every HTTP error is ``{"detail": "one sentence"}``.

One detector and one ensemble serve every request: ``/v1/predict`` asks the shared stills
recognizer with the request's prior (``predict`` keeps no state), and each WebSocket gets its own
``FaceStream`` of the shared live recognizer, built off the event loop; a frame's time is when it
arrived, so smoothing, hold and calm frames run in seconds whatever the client's frame rate.

WebSocket ``/v1/stream`` protocol: the client sends image frames (JPEG...) as binary messages and
gets one JSON text answer per processed frame, ``{"frame": n, "width", "height", "faces": [...],
"dropped", "ms"}`` (each face with ``track_id``, ``relative`` and ``held``), or ``{"frame": n, "error": ...}``.
A JSON text message is a control message: ``{"resting_face": "take", "track_id": 3}`` takes what
face 3 shows now as that person's resting face, ``{"resting_face": "clear", "track_id": 3}``
clears it; without ``track_id``, every face in view. It is applied between frames, so the next
frame's answer reads that face relative to its resting face (``"relative": true``). Its reply has
no ``"frame"``: ``{"resting_face": "take", "track_ids": [3]}``, or ``{"resting_face": ..., "error":
"..."}`` for a malformed message or a face not in view; the connection stays open.

A person's profile is kept per connection, in memory only: ``{"profile": {...}}`` (a profile
file's JSON, as ``fer-ensemble enrol`` or the page writes it) reads the face ``track_id`` (none:
every face, those that appear later too) through it, ``{"profile": null}`` stops; reply
``{"profile": "set" | "cleared", "track_ids": [...]}``. ``{"enrol": "start"}`` (optionally with
``"captures"`` and ``"countdown_s"``) starts a guided enrolment of the face in view
(``fer_ensemble.runtime.enrolment``): every frame's answer then carries ``"enrolment"`` (the
prompt: phase, expression, step, captured, refused, message); the answer in which it is done also
carries ``"profile"`` (the new profile's JSON, for the client to keep: the server keeps none once
the connection closes), and that face is read through it. ``{"enrol": "redo"}`` takes the current
expression again, ``{"enrol": "cancel"}`` stops. ``/v1/predict`` takes a profile as a second
form part, ``profile``.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import os
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import cv2
import numpy as np
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    HTTPException,
    Query,
    Request,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
)
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, model_serializer
from starlette.formparsers import MultiPartParser
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketState

from fer_ensemble import __version__
from fer_ensemble.errors import InputError, json_text
from fer_ensemble.media import TooManyPixels, check_pixels, heif_pixels, is_heif, open_heif
from fer_ensemble.runtime.detectors import create_detector, live_settings
from fer_ensemble.runtime.enrolment import EnrolmentOptions, GuidedEnrolment, enrolled_track
from fer_ensemble.runtime.ensemble import Ensemble, load_calibration
from fer_ensemble.runtime.geometry import PITCH_LIMIT, YAW_LIMIT
from fer_ensemble.runtime.profile import Profile, ProfileError
from fer_ensemble.runtime.recognizer import (
    AUTO_RESTING_FACE_HELP,
    EmotionRecognizer,
    load_ensemble,
)
from fer_ensemble.runtime.stream import FaceStream, later_time
from fer_ensemble.runtime.tracking import EMA_WEIGHT

STATIC = Path(__file__).parent / "static"
SWAGGER_ASSETS = files("fastapi_offline") / "static"  # Swagger UI 5 (OpenAPI 3.1), no CDN


@dataclass
class ServerSettings:
    ensemble: str | None = None
    token: str | None = None
    max_upload_bytes: int = 8 * 2**20
    cors_origins: list[str] = field(default_factory=list)
    max_fps: float = 15.0
    threads: int | None = None
    prior_strength: float | None = None  # None: the ensemble file's default
    max_pixels: int = 50_000_000  # width x height, read from the header before decoding
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 2)  # images decoded and classified at once
    queue: int = 8  # requests waiting for a worker before 503
    detector: dict = field(default_factory=dict)  # create_detector settings for photos (default: DEFAULT_DETECTOR, stills preset)
    calibration: str | None = None  # none, a preset (posed) or a file adapt wrote; None: the ensemble file's own
    max_streams: int = 32  # WebSocket streams open at once; beyond them a new one is closed with 1013


PRIOR_DESCRIPTION = ("class prior of the answers: 'uniform' (rare emotions not given up), 'ferplus' "
                     "(FER+'s own mix) or a strength in [0, 1]; default: the server's")


class FaceOut(BaseModel):
    box: list[int] = Field(description="x, y, width, height in image pixels")
    label: str
    score: float
    probabilities: dict[str, float]
    track_id: int | None = None
    relative: bool = Field(False, description="read against a resting face (a stream's face after 'take')")
    held: bool = Field(False, description="a tracked face the detector missed in this frame, shown "
                                          "with its last box and answer (streams only)")
    profiled: bool = Field(False, description="read through a person's profile (a 'profile' part, or a "
                                               "stream's profile message or enrolment)")
    pose: dict[str, float] | None = Field(None, description="with ?geometry=true: yaw, pitch, roll in degrees "
                                                            "(docs/photos.md has the signs)")
    turned: bool | None = Field(None, description="with ?geometry=true: turned past the measured readable range "
                                                  f"(|yaw| > {YAW_LIMIT:g} or |pitch| > {PITCH_LIMIT:g} degrees): the "
                                                  "label is not to be trusted")
    blendshapes: dict[str, float] | None = Field(None, description="with ?geometry=true: 51 named scores in [0, 1]")
    landmarks: list[list[float]] | None = Field(None, description="with ?geometry=true: 478 [x, y, z] in image pixels")

    @model_serializer(mode="wrap")
    def _geometry_only_when_read(self, handler):  # no return annotation: the schema stays the model's
        """The face as ``Face.to_dict`` gives it: the geometry keys only when geometry was read."""
        data = handler(self)
        for key in ("pose", "turned", "blendshapes", "landmarks"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class Error(BaseModel):
    detail: str = Field(description="what is wrong, in one sentence")


class PredictOut(BaseModel):
    width: int
    height: int
    faces: list[FaceOut]


class Health(BaseModel):
    status: str
    version: str


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


def prior_strength(ensemble: Ensemble, value: str | None, default: float | None) -> float:
    """A request's ``prior`` (ferplus, uniform or 0..1), else the server's; 422 when malformed."""
    try:
        return ensemble.prior_strength(value if value is not None else default)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None


class Recognizers:
    """The recognizers every request shares, over one ensemble: ``still`` for photos (the
    server's detector settings), ``live`` for streams (their live preset), each with one detector
    for every thread (BlazeFace's session is shared, a Haar detector keeps a cascade per thread),
    and ``geometric``, ``still`` with face geometry (``threads`` ONNX Runtime threads a model, as
    the ensemble's). None keeps state: a request gives its prior per call, a stream is a ``FaceStream``."""

    def __init__(self, ensemble: Ensemble, detector: dict | None = None, threads: int | None = None):
        detector = detector or {}
        self.still = EmotionRecognizer(ensemble, create_detector(detector), ema_weight=1.0)
        self.live = EmotionRecognizer(ensemble, create_detector(live_settings(detector)), ema_weight=EMA_WEIGHT)
        self.geometric = EmotionRecognizer(ensemble, self.still.detector, ema_weight=1.0, geometry=True,
                                           threads=threads)
        """``still`` with face geometry (``?geometry=true``); its ``add_geometry`` serves streams too."""

    def stream(self, prior: float, auto_resting_face: bool = False) -> FaceStream:
        """A new stream of faces, tracked and smoothed over time, for one WebSocket connection."""
        return self.live.stream(prior_strength=prior, auto_resting_face=auto_resting_face)


GEOMETRY_DESCRIPTION = ("true: each face's head pose, a 'turned' flag, 51 blendshapes and 478 landmarks too "
                        "(MediaPipe's models, about 20 ms a face)")
RESTING_FACE_ACTIONS = ("take", "clear")
RESTING_FACE_EXAMPLE = '{"resting_face": "take" or "clear", "track_id": 3} (no track_id: every face)'
MAX_PENDING_CONTROLS = 64  # control messages waiting for the frame in progress before 1008


def parse_resting_face(message: object) -> tuple[str, int | None]:
    """(action, track_id or None for every face) from a decoded control message; ValueError
    saying what is wrong with it."""
    if not isinstance(message, dict) or "resting_face" not in message:
        raise ValueError(f"a text message must be a JSON control message: {RESTING_FACE_EXAMPLE}")
    check_keys(message, ("resting_face", "track_id"), RESTING_FACE_EXAMPLE)
    action, track_id = message["resting_face"], message.get("track_id")
    if action not in RESTING_FACE_ACTIONS:
        raise ValueError(f"resting_face must be 'take' or 'clear', not {quoted(action)}")
    return action, checked_track_id(track_id)


def check_keys(message: dict, known: tuple[str, ...], example: str) -> None:
    """ValueError naming a control message's keys outside ``known`` (and the ``example`` expected)."""
    unknown = sorted(str(key) for key in message if key not in known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)[:80]}: expected {example}")


def checked_track_id(track_id: object) -> int | None:
    """A control message's ``track_id``: an integer or None (every face); ValueError otherwise."""
    if track_id is not None and type(track_id) is not int:
        raise ValueError(f"track_id must be an integer (omit it for every face), not {quoted(track_id)}")
    return track_id


def apply_resting_face(stream: FaceStream, action: str, track_id: int | None) -> list[int]:
    """Take or clear the resting face of face ``track_id`` (None: every face in view); the track
    ids changed. KeyError when that face is not in view. Never call it while ``update`` runs."""
    if action == "take":
        taken = stream.take_resting_face(None if track_id is None else [track_id])
        if track_id is not None and not taken:
            raise KeyError(track_id)
        return taken
    return stream.clear_resting_face(None if track_id is None else [track_id])


ECHO_CHARACTERS = 40
"""How much of a bad control message's ``resting_face`` value its reply echoes."""


def quoted(value: object) -> str:
    """A client's value as an error message quotes it: its JSON text, cut to ``ECHO_CHARACTERS``."""
    return json.dumps(value, allow_nan=True)[:ECHO_CHARACTERS]  # inside a message's text: NaN is fine there


def echoed(value: object) -> str | bool | None:
    """A control message's ``resting_face`` value as its reply echoes it: text cut to
    ``ECHO_CHARACTERS``, true, false or null as sent, another JSON value (a number, a list...) as its
    JSON text, cut the same way (so a reply stays small and strict JSON: no NaN, no huge number)."""
    if value is None or isinstance(value, (str, bool)):
        return value[:ECHO_CHARACTERS] if isinstance(value, str) else value
    return quoted(value)


def control_reply(stream: FaceStream, message: object) -> dict:
    """Apply one decoded control message to ``stream``; the reply to send (never raises for
    a bad message: the reply's ``error`` says what is wrong)."""
    action = echoed(message.get("resting_face")) if isinstance(message, dict) else None
    try:
        action, track_id = parse_resting_face(message)
        return {"resting_face": action, "track_ids": apply_resting_face(stream, action, track_id)}
    except KeyError:
        return {"resting_face": action, "error": f"no face #{track_id} in view (see the track_id of the "
                                                 "faces in the latest frame's answer)"}
    except ValueError as error:  # UserError included: an ensemble without a class prior
        return {"resting_face": action, "error": str(error)}


def read_profile(data: bytes | str | object, ensemble: Ensemble) -> Profile:
    """A profile sent to the server (a file's bytes, or its decoded JSON), checked against the
    server's ensemble; HTTPException 422 saying what is wrong."""
    try:
        if isinstance(data, (bytes, str)):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                raise ProfileError("profile: not a profile file (not JSON)") from None
        profile = Profile.from_dict(data, "profile")
        ensemble.check_profile(profile)
    except ProfileError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return profile


PROFILE_EXAMPLE = '{"profile": {...a profile file\'s JSON...} or null, "track_id": 3} (no track_id: every face)'
ENROL_EXAMPLE = '{"enrol": "start" (with "captures", "countdown_s" if wanted), "redo" or "cancel"}'
ENROL_LIMITS = {"captures": (1, 10), "countdown_s": (0.0, 10.0)}
"""What a client may set of a guided enrolment started by ``{"enrol": "start"}``, and its bounds."""


def profile_reply(stream: FaceStream, message: dict, ensemble: Ensemble) -> dict:
    """Apply a ``{"profile": ..., "track_id": ...}`` message to ``stream``; the reply (its ``error``
    says what is wrong, never raised)."""
    action = "set" if message["profile"] is not None else "cleared"
    try:
        check_keys(message, ("profile", "track_id"), PROFILE_EXAMPLE)
        track_id = checked_track_id(message.get("track_id"))
        profile = None if message["profile"] is None else read_profile(message["profile"], ensemble)
    except HTTPException as error:
        return {"profile": action, "error": error.detail}
    except ValueError as error:
        return {"profile": action, "error": str(error)}
    if track_id is not None:
        try:
            stream.set_profile(track_id, profile)
        except KeyError:
            return {"profile": action, "error": f"no face #{track_id} in view (see the track_id of the faces "
                                                "in the latest frame's answer)"}
        return {"profile": action, "track_ids": [track_id]}
    stream.options = replace(stream.options, profile=profile)  # faces that appear later too
    stream.forget_lost_profiles()  # a lost face's former profile must not come back
    changed = [t.track_id for t in stream.tracker.tracks]
    for changed_id in changed:
        stream.set_profile(changed_id, profile)
    return {"profile": action, "track_ids": changed}


def enrolment_options(message: dict) -> EnrolmentOptions:
    """The options of an ``{"enrol": "start", ...}`` message; ValueError saying what is wrong."""
    check_keys(message, ("enrol", *ENROL_LIMITS), ENROL_EXAMPLE)
    for key, (low, high) in ENROL_LIMITS.items():
        value = message.get(key, low)
        whole = key != "captures" or isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high or not whole:
            kind = "a whole number" if key == "captures" else "a number"
            raise ValueError(f"{key} must be {kind} in [{low:g}, {high:g}], not {quoted(value)}")
    return EnrolmentOptions(captures=int(message.get("captures", EnrolmentOptions.captures)),
                            countdown_s=float(message.get("countdown_s", EnrolmentOptions.countdown_s)))


SETTINGS_VARIABLE = "FER_ENSEMBLE_SERVER_SETTINGS"


def keep_uploads_in_memory(max_upload_bytes: int) -> None:
    """Multipart uploads up to ``max_upload_bytes`` stay in memory, never spilled to temporary files.
    Starlette's spool size is a class attribute, so this is a process setting: ``serve`` sets it
    (and each of its ``--workers`` processes), not ``create_app``."""
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_upload_bytes + 1)


def app_from_environment() -> FastAPI:
    """The app of one ``serve --workers N`` process, from the settings ``serve`` put in the environment."""
    settings = ServerSettings(**json.loads(os.environ[SETTINGS_VARIABLE]))
    keep_uploads_in_memory(settings.max_upload_bytes)
    return create_app(settings)


@dataclass
class ServerState:
    """What one app's routes share, kept in ``app.state.server``: its settings, the ensemble, the
    recognizers, the worker pool and how many streams are open (touched only on the event loop)."""

    settings: ServerSettings
    ensemble: Ensemble
    recognizers: Recognizers
    pool: WorkerPool
    open_streams: int = 0


def server_state(connection: HTTPConnection) -> ServerState:
    """The dependency every route reads the app's ``ServerState`` through."""
    return connection.app.state.server


State = Annotated[ServerState, Depends(server_state)]


def check_token(connection: HTTPConnection, state: State) -> None:
    """The bearer header; a WebSocket may send ``?token=`` instead (browsers cannot set its headers).
    401 with ``WWW-Authenticate: Bearer`` (a WebSocket: closed with 1008) when it is missing or wrong."""
    token = state.settings.token
    if token is None:
        return
    header = connection.headers.get("authorization", "")
    websocket = connection.scope["type"] == "websocket"
    given = header[7:] if header.lower().startswith("bearer ") else (
        connection.query_params.get("token", "") if websocket else "")
    if hmac.compare_digest(given.encode(), token.encode()):
        return
    if websocket:
        raise WebSocketException(code=1008, reason="missing or wrong token (?token=, or the page's token field)")
    raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                        headers={"WWW-Authenticate": "Bearer"})


api = APIRouter(dependencies=[Depends(check_token)])
"""Every route that touches the models: behind the token when the server has one."""
pages = APIRouter()
"""The page and the offline API docs: no data, no token."""


@api.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok", version=__version__)


@api.get("/v1/model")
def model(state: State) -> dict:
    """The ensemble file, every member's model card, the calibration in use (null: none) and the
    server's limits, in the units of its flags (``max_upload_mb``, ``max_megapixels``)."""
    calibration = state.ensemble.calibration
    return {
        "ensemble": state.ensemble.config,
        "members": [m.classifier.card for m in state.ensemble.members],
        "calibration": calibration.to_dict() if calibration is not None else None,
        "limits": {"max_upload_mb": round(state.settings.max_upload_bytes / 2**20, 4),
                   "max_megapixels": round(state.settings.max_pixels / 1e6, 4)},
    }


@api.post("/v1/predict", response_model=PredictOut,
          responses={413: {"model": Error, "description": "upload or image too large"},
                     415: {"model": Error, "description": "not an image"},
                     422: {"model": Error, "description": "no 'file' part, more than one, a malformed ?prior= or "
                                                        "a profile that is not one of this server's ensemble"},
                     503: {"model": Error, "description": "every worker busy: retry after Retry-After seconds"}})
async def predict(
    state: State,
    request: Request,
    file: UploadFile = File(..., description="an image (JPEG, PNG, ...)"),
    profile: UploadFile | None = File(None, description="a person's profile (the JSON file `fer-ensemble enrol` "
                                                        "or the page writes): every face is read through it; "
                                                        "used for this request only, never stored"),
    prior: str | None = Query(None, description=PRIOR_DESCRIPTION),
    geometry: bool = Query(False, description=GEOMETRY_DESCRIPTION),
) -> PredictOut:
    settings = state.settings
    strength = prior_strength(state.ensemble, prior, settings.prior_strength)
    person = None if profile is None else read_profile(await profile.read(), state.ensemble)
    parts = len((await request.form()).getlist("file"))  # the form FastAPI parsed, not read again
    if parts > 1:
        raise HTTPException(status_code=422, detail=f"one image per request; {parts} 'file' parts were sent")
    data = await file.read()

    def work() -> PredictOut:
        image = decode_image(data, settings.max_pixels)
        recognizer = state.recognizers.geometric if geometry else state.recognizers.still
        faces = recognizer.predict(image, profile=person, prior_strength=strength)
        return PredictOut(width=image.shape[1], height=image.shape[0], faces=[FaceOut(**f.to_dict()) for f in faces])

    try:
        return await state.pool.run(work)
    except ImageRejected as error:
        raise HTTPException(status_code=error.status, detail=error.detail) from None
    except Busy:
        raise HTTPException(status_code=503, detail="every worker is busy; retry shortly",
                            headers={"Retry-After": "1"}) from None


@api.websocket("/v1/stream")
async def stream(websocket: WebSocket, state: State,
                 prior: str | None = Query(None, description=PRIOR_DESCRIPTION),
                 auto_resting_face: bool = Query(False, description=AUTO_RESTING_FACE_HELP),
                 geometry: bool = Query(False, description=GEOMETRY_DESCRIPTION)) -> None:
    """Live recognition with tracking. Send image frames as binary messages; each processed
    frame is answered with ``{"frame", "width", "height", "faces", "dropped", "ms"}`` (faces
    with ``track_id``, ``relative`` and ``held``). Send ``{"resting_face": "take", "track_id": 3}`` /
    ``{"resting_face": "clear", "track_id": 3}`` as JSON text (no ``track_id``: every face in
    view) to take or clear that person's resting face: the next frame's answer reads it
    relative to it (``"relative": true``). The reply, ``{"resting_face", "track_ids"}`` or
    ``{"resting_face", "error"}``, has no ``frame``; a bad control message leaves the
    connection open. Non-JSON text closes with 1003, a message above the upload limit with
    1009; ``?prior=`` as in ``/v1/predict``; ``?auto_resting_face=true``: each face takes its
    resting face from its calm frames (``StreamOptions(auto_resting_face=True)``);
    ``?geometry=true``: each face's pose, ``turned``, blendshapes and landmarks too;
    ``?token=`` when the server has one. A refused stream (token, origin, query) is accepted and
    closed at once with 1008 and the reason (``refuse_websocket``); one beyond the server's
    ``max_streams`` with 1013 (try again later) and the reason."""
    check_origin(websocket, state.settings.cors_origins)
    try:
        strength = prior_strength(state.ensemble, prior, state.settings.prior_strength)
    except HTTPException as error:
        raise WebSocketException(code=1008, reason=str(error.detail)) from None
    limit = state.settings.max_streams
    if state.open_streams >= limit:
        raise WebSocketException(code=1013, reason=f"this server already serves its {limit} streams "
                                                   "(serve --max-streams); try again later")
    state.open_streams += 1
    try:
        await websocket.accept()
        face_stream = await asyncio.to_thread(state.recognizers.stream, strength, auto_resting_face)
        await FrameStream(websocket, face_stream, state.settings, state.pool, state.recognizers.live,
                          state.recognizers.geometric if geometry else None).run()
    finally:
        state.open_streams -= 1


def check_origin(websocket: WebSocket, allowed: list[str]) -> None:
    """Browsers apply no CORS to WebSockets, so any site's page could open the stream of a server
    on this machine (cross-site WebSocket hijacking): a browser's ``Origin`` must be this server's
    own (its host and port, as the ``Host`` header names them) or one of ``allowed`` (``serve
    --cors-origin``; ``*``: any). Programs that send no ``Origin`` are not browsers and pass.
    WebSocketException 1008 otherwise. Behind a proxy that rewrites ``Host``, the public origin must
    be among ``allowed``."""
    origin = websocket.headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed or urlsplit(origin).netloc == websocket.headers.get("host"):
        return
    raise WebSocketException(code=1008, reason=f"a page from {origin} may not open this stream (serve --cors-origin)")


CLOSE_REASON_BYTES = 123
"""The longest reason a WebSocket close frame carries (RFC 6455, section 5.5: a control frame's
payload is at most 125 bytes, two of them the close code)."""


def validation_message(errors: list[dict]) -> str:
    """FastAPI's list of parameter errors as one sentence (``name: message; ...``); a missing or
    malformed upload says how to send one."""
    if any(error["loc"][-1] == "file" for error in errors):
        return "send the image as the multipart/form-data field 'file' (curl -F file=@photo.jpg)"
    return "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in errors)


async def one_line_validation_error(request: Request, error: Exception) -> JSONResponse:
    """422 with ``{"detail": "one sentence"}``, the shape of every other error of the API, instead of
    FastAPI's list of error objects."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": validation_message(list(error.errors()))})


async def refuse_websocket(websocket: WebSocket, error: Exception) -> None:
    """Accept, then close with the code (1008) and the reason: a WebSocket closed before it is
    accepted reaches clients as a bare HTTP 403, so a wrong token, a page of another site and a bad
    ``?prior=`` could not be told apart (the page shows the reason)."""
    if isinstance(error, WebSocketRequestValidationError):
        code, reason = 1008, validation_message(list(error.errors()))
    else:
        assert isinstance(error, WebSocketException)
        code, reason = error.code, error.reason
    if websocket.client_state == WebSocketState.DISCONNECTED:
        return
    if websocket.client_state == WebSocketState.CONNECTING:
        await websocket.accept()
    await websocket.close(code=code, reason=reason.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore"))


@pages.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, state: State) -> dict:
    schema = request.app.openapi()
    if state.settings.token is not None:  # /docs shows an Authorize button that sends the header
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
    return schema


@pages.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="fer-ensemble API",
                               swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs-assets/swagger-ui.css",
                               swagger_favicon_url="/docs-assets/favicon.png")


@pages.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text())


def create_app(settings: ServerSettings | None = None, ensemble: Ensemble | None = None) -> FastAPI:
    """The web app: the page (``/``), ``/healthz``, ``/v1/model``, ``POST /v1/predict``, the
    WebSocket ``/v1/stream`` and offline API docs (``/docs``, ``/openapi.json``), as the module's
    docstring describes.

    ``settings``: the server's limits, token, CORS origins, prior, calibration and detector
    (default: ``ServerSettings()``). ``ensemble``: the loaded ensemble to serve (None: loaded from
    ``settings.ensemble``, the shipped one by default, with ``settings.threads``); with a
    ``settings.calibration`` the app serves ``ensemble.with_calibration(...)``, which shares its
    members, and the given ensemble is not changed.
    Returns the FastAPI app, its shared state in ``app.state.server`` (``ServerState``); serve
    it with any ASGI server. Raises UserError (exit 2 in ``serve``) for an ensemble file, a
    member or a calibration that cannot be loaded. It changes no process-wide setting: ``serve`` does that
    (``keep_uploads_in_memory``)."""
    settings = settings or ServerSettings()
    ensemble = ensemble or load_ensemble(settings.ensemble, settings.threads)
    if settings.calibration is not None:
        ensemble = ensemble.with_calibration(load_calibration(settings.calibration))
    app = FastAPI(title="fer-ensemble", version=__version__,
                  description="Facial expression recognition (FER+ emotions) with a ResNet50 + "
                              "MobileNetV2 ensemble.",
                  openapi_url=None, docs_url=None, redoc_url=None)  # served by `pages`, offline
    app.state.server = ServerState(settings, ensemble, Recognizers(ensemble, settings.detector, settings.threads),
                                   WorkerPool(settings.concurrency, settings.queue))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes)
    app.add_exception_handler(RequestValidationError, one_line_validation_error)
    app.add_exception_handler(WebSocketRequestValidationError, refuse_websocket)
    app.add_exception_handler(WebSocketException, refuse_websocket)
    app.include_router(pages)
    app.mount("/docs-assets", StaticFiles(directory=str(SWAGGER_ASSETS)), name="docs-assets")
    app.include_router(api)
    return app


class FrameStream:
    """One WebSocket connection: ``receive`` keeps the newest frame and the waiting control
    messages as they arrive; ``run`` answers the controls (resting-face messages, applied between
    frames: ``control_reply``), then the newest frame, at most ``max_fps`` frames a second, on the
    worker pool. Other text closes the connection with 1003, a message above the upload limit with
    1009."""

    def __init__(self, websocket: WebSocket, stream: FaceStream, settings: ServerSettings, pool: WorkerPool,
                 recognizer: EmotionRecognizer | None = None, geometric: EmotionRecognizer | None = None):
        self.websocket, self.stream, self.settings, self.pool = websocket, stream, settings, pool
        self.recognizer = recognizer  # the stream's recognizer, which a guided enrolment reads faces with
        self.geometric = geometric  # adds each face's geometry (?geometry=true); None: off
        self.latest: tuple[int, bytes, float] | None = None  # (number, bytes, arrival) of the newest frame not yet taken
        self.controls: list = []  # decoded control messages waiting for the frame in progress
        self.arrived = asyncio.Event()
        self.received = self.dropped = 0
        self.closed = False
        self.interval = 1.0 / settings.max_fps if settings.max_fps > 0 else 0.0
        self.last_start = 0.0
        self.enrolment: GuidedEnrolment | None = None  # a guided enrolment in progress

    async def run(self) -> None:
        reader = asyncio.create_task(self.receive())
        try:
            while (frame := await self.next_frame()) is not None:
                await self.answer(*frame)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await asyncio.wait([reader], timeout=2)  # let a closing handshake finish
            reader.cancel()

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code=code, reason=reason)
        self.closed = True
        self.arrived.set()

    async def receive(self) -> None:
        """Take messages until the client leaves or one closes the connection."""
        try:
            while not self.closed:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self.take(message)
        except (WebSocketDisconnect, RuntimeError):
            pass
        self.closed = True
        self.arrived.set()

    async def take(self, message: Mapping[str, Any]) -> None:
        """A frame becomes the newest (dropping one never processed); text is a control message."""
        data = message.get("bytes")
        limit = self.settings.max_upload_bytes
        if len(data if data is not None else message.get("text") or "") > limit:
            return await self.close(1009, f"frame larger than {megabytes(limit)} (--max-upload-mb)")
        if data is None:
            return await self.take_control(message.get("text") or "")
        self.received += 1
        if self.latest is not None:
            self.dropped += 1  # the previous frame was never processed: stale
        self.latest = (self.received, data, time.perf_counter())  # its time: when it arrived
        self.arrived.set()

    async def take_control(self, text: str) -> None:
        try:
            self.controls.append(json.loads(text))
        except ValueError:
            return await self.close(1003, "send image frames as binary messages; text is for JSON control messages")
        if len(self.controls) > MAX_PENDING_CONTROLS:
            return await self.close(1008, "too many control messages waiting for one frame")
        self.arrived.set()

    async def answer_controls(self) -> None:
        """Apply the waiting control messages, in order, and reply to each (no frame is in progress)."""
        while self.controls:
            await self.websocket.send_text(json_text(self.control(self.controls.pop(0))))

    def control(self, message: object) -> dict:
        """One control message applied (no frame is in progress): a resting face's, a profile's
        or an enrolment's; the reply."""
        if isinstance(message, dict) and "profile" in message:
            return profile_reply(self.stream, message, self.stream.reader.ensemble)
        if isinstance(message, dict) and "enrol" in message:
            return self.enrol_reply(message)
        return control_reply(self.stream, message)

    def enrol_reply(self, message: dict) -> dict:
        """Start, redo or cancel this connection's guided enrolment; the reply."""
        action = echoed(message["enrol"])
        try:
            if action == "start":
                if self.recognizer is None:
                    raise ValueError("this stream cannot enrol (no recognizer)")
                self.enrolment = GuidedEnrolment(self.recognizer, options=enrolment_options(message))
                return {"enrol": action, "steps": len(self.enrolment.options.classes),
                        "classes": list(self.enrolment.options.classes)}
            if action in ("redo", "cancel") and len(message) == 1:
                if self.enrolment is None:
                    raise ValueError("no enrolment in progress: send {\"enrol\": \"start\"} first")
                if action == "cancel":
                    self.enrolment = None
                    return {"enrol": action}
                return {"enrol": action, "expression": self.enrolment.redo()}
            raise ValueError(f"expected {ENROL_EXAMPLE}")
        except ValueError as error:  # ProfileError included: no scikit-learn, members without embeddings
            return {"enrol": action, "error": str(error)}

    async def next_frame(self) -> tuple[int, bytes, float] | None:
        """The newest frame once the frame-rate cap lets it start, the control messages that came
        before it answered; None once the connection is closed."""
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            if self.closed:
                return None
            await self.answer_controls()
            if self.latest is None:  # already taken, or only control messages arrived
                continue
            wait = self.last_start + self.interval - time.perf_counter()
            if wait > 0:  # the per-connection frame-rate cap
                await asyncio.sleep(wait)
                if self.closed:
                    return None
                await self.answer_controls()  # those that arrived while we waited apply to this frame
            frame, self.latest = self.latest, None
            self.last_start = time.perf_counter()
            return frame

    def work(self, data: bytes, arrived_s: float) -> tuple[np.ndarray, list, dict]:
        """Frame ``data``'s faces, and what a guided enrolment adds to its answer."""
        image = decode_image(data, self.settings.max_pixels)
        faces = self.stream.update(image, later_time(arrived_s, self.stream.time_s))
        if self.geometric is not None:
            faces = self.geometric.add_geometry(image, faces)
        return image, faces, self.enrol_frame(image)

    def enrol_frame(self, image: np.ndarray) -> dict:
        """Feed the frame to the guided enrolment, if one runs: ``{"enrolment": state}``, and once it
        is done the profile (its JSON), given to the enrolled face; ``{}`` when none runs."""
        if self.enrolment is None:
            return {}
        assert self.stream.time_s is not None  # the frame was just read at it
        state = self.enrolment.update(image, self.stream.time_s)
        extra: dict = {"enrolment": state.to_dict()}
        if state.phase == "failed":
            self.enrolment = None
        profile = self.enrolment.profile if self.enrolment is not None else None
        if state.phase == "done" and profile is not None:
            self.enrolment = None
            track_id = enrolled_track(self.stream.tracker.tracks, state.box)  # None: the enrolled face is not in view now
            if track_id is not None:
                self.stream.set_profile(track_id, profile)
            extra["enrolment"]["track_id"] = track_id
            extra["profile"] = profile.to_dict()
        return extra

    async def answer(self, number: int, data: bytes, arrived_s: float) -> None:
        """Frame ``number``'s faces (or why there are none) to the client."""
        try:
            image, faces, enrolment = await self.pool.run(self.work, data, arrived_s)
        except ImageRejected as error:
            reply: dict = {"frame": number, "error": error.detail}
        except Busy:
            self.dropped += 1
            reply = {"frame": number, "error": "every worker is busy", "retry_after": 1}
        else:
            reply = {"frame": number, "width": image.shape[1], "height": image.shape[0],
                     "faces": [f.to_dict() for f in faces], "dropped": self.dropped,
                     "ms": round((time.perf_counter() - self.last_start) * 1000, 1), **enrolment}
        await self.websocket.send_text(json_text(reply))
