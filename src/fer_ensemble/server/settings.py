"""The web server's settings (``serve``'s options): ``ServerSettings``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class ServerSettings:
    """What ``serve``'s options set for one app (``create_app``): the ensemble file, the token, the
    limits (upload bytes, pixels, frames a second per stream, open streams, workers and queue), CORS
    origins, the default prior, a calibration and the photos' detector settings (plain options,
    ``detectors.create_detector``'s; streams use that detector's live preset)."""

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
