"""The ``fer-ensemble`` command: a subcommand per module of ``fer_ensemble.apps`` (``fit-ensemble``
in ``apps/fit_ensemble.py``), each with its ``add_<name>_arguments`` and ``run_<name>``, grouped in
the help. Subcommands import torch only when they need it."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Callable
from typing import NoReturn

from fer_ensemble import __version__


class CommandParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line on stderr (what is wrong, then where the
    help is) and exit 2, instead of the whole usage block: the same rule as every other mistake."""

    given: list[str] = []  # the arguments parse_args was given

    def error(self, message: str) -> NoReturn:
        options = [a for a in self.given if a.startswith("-")]
        if message.endswith("required: COMMAND") and options:  # `fer-ensemble --frobnicate`: name it
            message = f"unrecognized arguments: {' '.join(options)} (a command comes first)"
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown option is reported by the command it was given to (its
        help names the options), not by the top-level parser."""
        self.given = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            self.exit(2, f"{prog}: unrecognized arguments: {' '.join(extras)}; see {prog} --help\n")
        return parsed


def _app(module: str, function: str):
    """A handler that imports its app only when it runs."""

    def handler(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"fer_ensemble.apps.{module}"), function)(args)

    return handler


COMMAND_GROUPS = {  # group title: {command: help}; command ``a-b`` lives in ``fer_ensemble.apps.a_b``
    "use": {
        "predict": "faces and emotions in images, folders and globs",
        "video": "annotated video, per-frame timeline, per-track plot and summary",
        "webcam": "live webcam (or --source FILE) with boxes, labels and bars",
        "demo": "the webcam if there is one, else the bundled sample photos and clip",
        "serve": "web page, REST and WebSocket API (needs the server extra)",
        "batch": "photo and video collections to Parquet, on Ray Data or a local process pool",
        "benchmark": "per-stage milliseconds and fps at 640x480, 1 and 4 faces; --stills: photos per detector",
    },
    "measure and adapt": {
        "evaluate": "metrics on FER+ (official protocol) or on your own labelled photos or crops",
        "adapt": "fit a calibration to your labelled photos, cross-validated (needs the adapt extra)",
        "enrol": "a person's profile from their own labelled photos, with a self-check (--profile FILE)",
    },
    "train and package the members": {
        "train": "train one member on FER+ (needs the train extra)",
        "export": "a run's best weights -> ONNX + model card",
        "fit-ensemble": "temperatures, flips and weights on Valid; package",
        "benchmark-train": "training img/s per member, size, precision",
        "fetch-weights": "ImageNet weights to fine-tune from (train --weights imagenet), checked and cached",
    },
}
MOVED_COMMANDS = {
    "pack-data": "python -m tools.pack_data",
    "import-weights": "python -m tools.gpu_weights",
}
"""Developer commands that left the installed package for the checkout's ``tools/`` (carrying data
and weights to and from a lent GPU machine): what to run instead."""


WRITES_WHEN_DONE = frozenset({"evaluate", "adapt", "enrol", "export", "fit-ensemble"})
"""Commands that write their outputs only once their work is done (``export`` stages them): what
Ctrl-C leaves of them is nothing, and their ``interrupted`` line says so."""


def command_list() -> str:
    """The commands by group, for ``fer-ensemble --help``."""
    lines: list[str] = []
    for title, commands in COMMAND_GROUPS.items():
        lines.append(f"\n{title}:" if lines else f"{title}:")
        lines += [f"  {name:<16} {help_text}" for name, help_text in commands.items()]
    return "\n".join(lines)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line: every command's options (None), or only ``command``'s, the others
    named with their help but no options ("": none), so that ``fer-ensemble --help`` and one
    command's run import no other app (the apps import ONNX Runtime and OpenCV)."""
    parser = CommandParser(
        prog="fer-ensemble",
        description="Facial expression recognition with a ResNet50 + MobileNetV2 ensemble trained on FER+.",
        epilog=command_list() + "\n\nfer-ensemble COMMAND --help gives the options of one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fer-ensemble {__version__}")
    common = CommandParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="let OpenCV's and FFmpeg's own warnings through")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of the commands below")
    for group in COMMAND_GROUPS.values():
        for name, help_text in group.items():
            sub = commands.add_parser(name, description=help_text, parents=[common])
            if command is None or name == command:
                module = name.replace("-", "_")
                app = importlib.import_module(f"fer_ensemble.apps.{module}")
                getattr(app, f"add_{module}_arguments")(sub).set_defaults(handler=_app(module, f"run_{module}"))
    return parser


def chosen_command(argv: list[str]) -> str:
    """The command ``argv`` names (its first word that is not an option), or "" for none or an
    unknown one (the parser then says so, or prints the help)."""
    word = next((a for a in argv if not a.startswith("-")), "")
    return word if any(word in group for group in COMMAND_GROUPS.values()) else ""


VIDEO_COMMANDS = ("video", "webcam", "batch", "demo")
"""Commands that decode video files: FFmpeg's decoding errors become their one-line warning."""


def quiet_opencv(verbose: bool, command: str) -> None:
    """Keep OpenCV's and FFmpeg's warnings (camera probing, damaged files) out of the output, so a
    problem reads as our one line; the video commands count FFmpeg's decoding errors instead
    (``media.decoder.watch_decoder_errors``). ``--verbose`` lets everything through."""
    if verbose:
        return
    import cv2

    if command in VIDEO_COMMANDS:
        from fer_ensemble.media.decoder import watch_decoder_errors

        watch_decoder_errors()
    else:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg first opens
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def main(argv: list[str] | None = None) -> int:
    from fer_ensemble.errors import ExitCode

    argv = sys.argv[1:] if argv is None else argv
    if (word := next((a for a in argv if not a.startswith("-")), "")) in MOVED_COMMANDS:
        print(f"fer-ensemble {word}: a developer command, not installed with the package; from a checkout "
              f"of the repository run: {MOVED_COMMANDS[word]} {shlex.join(argv[argv.index(word) + 1:])}".rstrip(),
              file=sys.stderr)
        return ExitCode.USAGE
    args = build_parser(chosen_command(argv)).parse_args(argv)
    quiet_opencv(args.verbose, args.command)

    return answered(f"fer-ensemble {args.command}", lambda: args.handler(args),
                    "nothing written (it writes its outputs once done)" if args.command in WRITES_WHEN_DONE else "")


def answered(prog: str, work: Callable[[], int | None], interrupted: str = "") -> int:
    """``work()``'s exit code (None: 0), with what a command may meet answered in one line on stderr
    naming ``prog``, never a traceback: a user's mistake (``UserError``: its exit code), a missing
    file (1), a missing extra (2, naming it), a closed pipe (0, quietly), an output path that cannot
    be used (2) and Ctrl-C (130: ``interrupted`` and what an ``Interrupted`` says was kept, else
    ``interrupted``; also when the Ctrl-C surfaced as another exception, ``caused_by_ctrl_c``).
    Every ``fer-ensemble`` command and the checkout's ``tools`` answer so."""
    from fer_ensemble.errors import ExitCode, UserError, caused_by_ctrl_c, missing_extra

    def fail(message: object, code: ExitCode = ExitCode.USAGE) -> int:
        print(f"{prog}: {message}", file=sys.stderr)
        return code

    try:
        return int(work() or 0)
    except UserError as error:  # a user's mistake: one line, no traceback
        return fail(error, error.exit_code)
    except FileNotFoundError as error:
        return fail(error, ExitCode.INPUT_FAILED)
    except ModuleNotFoundError as error:
        if (message := missing_extra(error)) is None:
            raise
        return fail(message)
    except BrokenPipeError:  # output piped into head, less, ...
        sys.stdout = open(os.devnull, "w")
        return ExitCode.OK
    except OSError as error:  # an output path that cannot be used: a folder, a file, no permission
        if error.filename is None:
            raise
        return fail(f"{error.filename}: {error.strerror}")
    except BaseException as error:  # Ctrl-C (an Interrupted says what was done and where), also one that
        if not caused_by_ctrl_c(error):  # cut an import short: ImportError "initialization failed"
            raise
        said = (str(error) if isinstance(error, KeyboardInterrupt) else "") or interrupted
        print(f"{prog}: interrupted{': ' + said if said else ''}", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
