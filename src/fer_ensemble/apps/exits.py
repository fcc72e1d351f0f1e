"""The exit codes of the commands that read photos and videos (docs/command-line.md): the option
that changes them and the code from what a run found."""

from __future__ import annotations

import argparse

from fer_ensemble.errors import ExitCode


def add_exit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--allow-empty``: a run that finds no face anywhere exits 0, not 3 (``exit_code``)."""
    parser.add_argument("--allow-empty", action="store_true",
                        help="exit 0, not 3, when no face is found anywhere (for scripts)")


def exit_code(failed: bool, found: bool, args: argparse.Namespace) -> ExitCode:
    """The exit codes (docs/command-line.md): 1 when an input failed, else 3 when no face was found (0 with
    ``--allow-empty``), else 0."""
    if failed:
        return ExitCode.INPUT_FAILED
    if not found and not getattr(args, "allow_empty", False):
        return ExitCode.NO_FACE
    return ExitCode.OK
