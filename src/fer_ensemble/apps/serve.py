"""``fer-ensemble serve``: the web app and REST API (needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import os

from fer_ensemble.apps.common import PRIOR_HELP, prior_argument, warn

TOKEN_VARIABLE = "FER_ENSEMBLE_TOKEN"


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback unless you say otherwise)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", default=None,
                        help=f"bearer token required on every endpoint (or set {TOKEN_VARIABLE})")
    parser.add_argument("--ensemble", help="ensemble file (default: the shipped weights)")
    parser.add_argument("--max-upload-mb", type=float, default=8.0, help="upload size limit (413 above)")
    parser.add_argument("--cors-origin", action="append", default=[], help="allow this origin (repeatable)")
    parser.add_argument("--max-fps", type=float, default=15.0, help="frames per second per WebSocket")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per member")
    parser.add_argument("--prior", type=prior_argument, default=None,
                        help=PRIOR_HELP + "; requests may override it with ?prior=")
    return parser


def run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from fer_ensemble.server.app import ServerSettings, create_app
    except ImportError as error:
        warn(f"the server needs the 'server' extra (pip install 'fer-ensemble[server]'): {error}")
        return 2
    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        warn(f"warning: serving on {args.host} without a token; anyone who can reach it can use it")
    settings = ServerSettings(ensemble=args.ensemble, token=token,
                              max_upload_bytes=int(args.max_upload_mb * 2**20),
                              cors_origins=args.cors_origin, max_fps=args.max_fps, threads=args.threads,
                              prior=args.prior)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0
