"""``fer-ensemble serve``: the web app and REST API (needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import copy
import errno
import logging
import os
import re
import socket
from dataclasses import asdict

from fer_ensemble.apps.common import (
    add_detector_arguments,
    add_ensemble_arguments,
    bounded,
    detector_options_of,
    warn,
)
from fer_ensemble.errors import UserError, json_text

TOKEN_VARIABLE = "FER_ENSEMBLE_TOKEN"
TOKEN_IN_QUERY = re.compile(r"(?<![\w-])(token=)[^&\s\"']*")


class RedactToken(logging.Filter):
    """Writes ``token=[redacted]`` for any ``token=...`` of a logged request line (the WebSocket
    may carry the token in its query; uvicorn logs every request's path and query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def log_config() -> dict:
    """uvicorn's own logging configuration with ``RedactToken`` on both of its handlers; given to
    ``uvicorn.run``, so each ``--workers`` process configures it too."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_token"] = {"()": f"{__name__}.RedactToken"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_token")
    return config


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback unless you say otherwise)")
    parser.add_argument("--port", type=bounded(int, 0, 65535), default=8000)
    parser.add_argument("--token", default=None,
                        help=f"bearer token required by /healthz and /v1/* (or set {TOKEN_VARIABLE}); "
                             "the 'Authorization: Bearer' header, or ?token= on the WebSocket only")
    parser.add_argument("--max-upload-mb", type=bounded(float, 0.0, low_open=True), default=8.0,
                        help="upload and WebSocket frame size limit (413 / close 1009 above; default %(default)s)")
    parser.add_argument("--max-megapixels", type=bounded(float, 0.0, low_open=True), default=50.0,
                        help="largest image, width x height read from its header before decoding "
                             "(413 above; default %(default)s)")
    parser.add_argument("--concurrency", type=bounded(int, 1), default=os.cpu_count() or 2,
                        help="images decoded and classified at once, per process (default: the CPU count, "
                             "%(default)s)")
    parser.add_argument("--queue", type=bounded(int, 0), default=8,
                        help="requests waiting for a worker; beyond them 503 with Retry-After (default %(default)s)")
    parser.add_argument("--cors-origin", action="append", default=[], help="allow this origin (repeatable)")
    parser.add_argument("--max-fps", type=bounded(float, 0.0), default=15.0,
                        help="frames per second per WebSocket (0: no cap; default %(default)s)")
    parser.add_argument("--max-streams", type=bounded(int, 1), default=32,
                        help="WebSocket streams open at once, per process; beyond them a new one is closed "
                             "with 1013, try again later (default %(default)s)")
    parser.add_argument("--threads", type=bounded(int, 1), default=None, help="ONNX Runtime threads per member")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    parser.add_argument("--workers", type=bounded(int, 1), default=1,
                        help="server processes (uvicorn's), each with its own copy of the models; "
                             "default %(default)s")
    add_ensemble_arguments(parser, "; requests may override it with ?prior=")
    add_detector_arguments(parser, still=True)  # the photos of /v1/predict; WebSockets use the live preset
    return parser


def check_address(host: str, port: int) -> None:
    """A UserError, before any banner, when ``host:port`` cannot be listened on (in use, or an
    address this machine does not have), rather than uvicorn's error after it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(infos[0][4])
    except OSError as error:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        hint = ("another server may be using it; choose another --port (or --host)" if error.errno == errno.EADDRINUSE
                else "--host must be an address of this machine (127.0.0.1, 0.0.0.0, ...) or a name that resolves to one")
        raise UserError(f"cannot listen on {address} ({error.strerror or error}): {hint}") from None


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn  # the server extra; a missing one is named by the command line

    from fer_ensemble.runtime.ensemble import check_ensemble_file, load_calibration
    from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE
    from fer_ensemble.server.app import SETTINGS_VARIABLE, create_app
    from fer_ensemble.server.limits import keep_uploads_in_memory
    from fer_ensemble.server.settings import ServerSettings

    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    settings = ServerSettings(ensemble=args.ensemble, token=token,
                              max_upload_bytes=int(args.max_upload_mb * 2**20),
                              cors_origins=args.cors_origin, max_fps=args.max_fps, threads=args.threads,
                              prior_strength=args.prior, max_pixels=int(args.max_megapixels * 1e6),
                              concurrency=args.concurrency, queue=args.queue, detector=detector_options_of(args).to_dict(defaults=False),
                              calibration=args.calibration, max_streams=args.max_streams)
    if args.workers == 1:
        keep_uploads_in_memory(settings.max_upload_bytes)
        app = create_app(settings)  # a broken ensemble file is one line here
    else:  # checked without loading the models: this process only supervises the workers
        check_ensemble_file(settings.ensemble or SHIPPED_ENSEMBLE)
        if settings.calibration is not None:
            load_calibration(settings.calibration)
    check_address(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        warn(f"warning: serving on {args.host} without a token; anyone who can reach it can use it")
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/"
    warn(f"fer-ensemble serve: {url} (page), {url}docs (API), "
         + ("token required: 'Authorization: Bearer TOKEN' (the page: its token field)" if token
            else "no token required")
         + f"; {args.workers} process(es), {settings.concurrency} image(s) at once and a queue of "
           f"{settings.queue} in each")
    options = {"host": args.host, "port": args.port, "log_level": "info", "access_log": not args.no_access_log,
               "log_config": log_config()}
    if args.workers == 1:
        uvicorn.run(app, **options)
    else:  # uvicorn starts each process from an import string; the settings travel in the environment
        os.environ[SETTINGS_VARIABLE] = json_text(asdict(settings))
        uvicorn.run("fer_ensemble.server.app:app_from_environment", factory=True, workers=args.workers, **options)
    return 0
