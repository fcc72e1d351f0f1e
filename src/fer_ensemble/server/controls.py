"""The WebSocket stream's control messages (JSON text between frames): a resting face taken or
cleared, a profile given or dropped, a guided enrolment started, redone or cancelled; each parsed and
checked, its reply built (``control_reply``, ``profile_reply``), a bad one answered with an error."""

from __future__ import annotations

import json
from dataclasses import replace

from fastapi import (
    HTTPException,
)

from fer_ensemble.runtime.enrolment import EnrolmentOptions
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.profile import Profile, ProfileError
from fer_ensemble.runtime.stream import FaceStream

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
