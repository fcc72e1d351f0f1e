"""One WebSocket connection of ``/v1/stream``: ``FrameStream`` keeps the newest frame and the waiting
control messages, and answers them at most ``max_fps`` frames a second on the worker pool."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import (
    WebSocket,
    WebSocketDisconnect,
)

from fer_ensemble.errors import json_text
from fer_ensemble.runtime.enrolment import GuidedEnrolment, enrolled_track
from fer_ensemble.runtime.recognizer import (
    EmotionRecognizer,
)
from fer_ensemble.runtime.stream import FaceStream, later_time
from fer_ensemble.server.controls import (
    ENROL_EXAMPLE,
    MAX_PENDING_CONTROLS,
    control_reply,
    echoed,
    enrolment_options,
    profile_reply,
)
from fer_ensemble.server.limits import Busy, ImageRejected, WorkerPool, decode_image, megabytes
from fer_ensemble.server.settings import ServerSettings


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
                self.enrolment = GuidedEnrolment(self.recognizer, options=enrolment_options(message),
                                                 geometry=None if self.geometric is None else self.geometric.geometry)
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
            faces = self.stream.keep_geometry(self.geometric.add_geometry(image, faces))
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
