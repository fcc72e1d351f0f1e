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
import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

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
    WebSocketException,
)
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, model_serializer
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketState

from fer_ensemble import __version__
from fer_ensemble.runtime.detectors import create_detector, live_settings
from fer_ensemble.runtime.ensemble import Ensemble, load_calibration
from fer_ensemble.runtime.geometry import PITCH_LIMIT, YAW_LIMIT
from fer_ensemble.runtime.recognizer import (
    AUTO_RESTING_FACE_HELP,
    EmotionRecognizer,
    load_ensemble,
)
from fer_ensemble.runtime.stream import FaceStream
from fer_ensemble.runtime.tracking import EMA_WEIGHT
from fer_ensemble.server.controls import read_profile
from fer_ensemble.server.limits import (
    BodySizeLimit,
    Busy,
    ImageRejected,
    WorkerPool,
    decode_image,
    keep_uploads_in_memory,
)
from fer_ensemble.server.settings import ServerSettings
from fer_ensemble.server.stream import FrameStream

STATIC = Path(__file__).parent / "static"


SWAGGER_ASSETS = files("fastapi_offline") / "static"  # Swagger UI 5 (OpenAPI 3.1), no CDN


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


SETTINGS_VARIABLE = "FER_ENSEMBLE_SERVER_SETTINGS"


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
