"""The errors every layer raises for a user's mistake, and the exit codes the command line
answers them with (one line on stderr, no traceback)."""

from __future__ import annotations

import hashlib
import json
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """What every ``fer-ensemble`` command returns (docs/command-line.md, "Exit codes")."""

    OK = 0
    INPUT_FAILED = 1  # some input (file, folder, video, camera) could not be read, or an output not written
    OUTPUT_FAILED = 1  # an alias of INPUT_FAILED: docs/command-line.md gives both the one code users rely on
    USAGE = 2  # a bad option or argument, a missing extra: nothing was processed
    NO_FACE = 3  # every input was read but no face was found anywhere (0 with --allow-empty)
    NOT_IMPROVED = 4  # adapt: the calibration did not beat the uncalibrated ensemble; nothing written
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it): what was done is kept (``Interrupted``)


class UserError(ValueError):
    """A bad path, file or argument: the message, one line, says what is wrong and how to fix it.
    ``exit_code`` is what the command line exits with (``ExitCode.USAGE``, 2, unless a subclass
    says otherwise); being a ``ValueError``, library callers that catch that keep working."""

    exit_code = ExitCode.USAGE


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, raised again once a command has stopped its work and kept what was done: the message
    says how much and where the partial outputs are ("64 of 625 photo(s) done, outputs in out/");
    the command line prints it as ``interrupted: <message>`` and exits 130."""


def caused_by_ctrl_c(error: BaseException) -> bool:
    """Whether ``error`` is a Ctrl-C in disguise: a KeyboardInterrupt itself, or an exception raised
    because of one (its ``__cause__`` or ``__context__`` chain holds one), such as the ImportError
    "initialization failed" of a C extension whose import a Ctrl-C cut short."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


class FerDeprecationWarning(DeprecationWarning):
    """A name of the API that still works for one release (``runtime.deprecation.DEPRECATED``);
    the test suite turns it into an error, so the project's own code uses none of them."""


class InputError(UserError):
    """An input (image, video, camera) that cannot be read: the command reports it in one line,
    goes on with the other inputs and exits ``ExitCode.INPUT_FAILED`` (1). An output that cannot be
    written is an ``OutputError``."""

    exit_code = ExitCode.INPUT_FAILED


class OutputError(UserError):
    """An output (annotated image, video, CSV, JSON, snapshot) that cannot be written: no
    permission, a full disk, a name the file system refuses. Exits with the code documented for
    it in docs/command-line.md, ``ExitCode.OUTPUT_FAILED`` (1, the same as an unreadable input), so
    scripts that test for 1 keep working; catch it apart from ``InputError`` to tell the two
    apart."""

    exit_code = ExitCode.OUTPUT_FAILED


class SpecError(UserError):
    """Settings or a file's contents that do not fit their typed spec (the detectors' ``HaarOptions`` and
    ``BlazeFaceOptions``, ``EnsembleSpec`` in ``fer_ensemble.runtime.ensemble``): an
    unknown key, a key of another detector, a value of the wrong type or out of range, a ``format``
    this version does not read. The message is one line naming the key and what it takes; exits
    ``ExitCode.USAGE`` (2)."""

    exit_code = ExitCode.USAGE


def checked_format(data: object, expected: str, source: str, what: str,
                   error: type[UserError] = UserError) -> dict:
    """``data`` (a file's parsed JSON) when it is an object whose ``"format"`` is ``expected``; else
    ``error``, one line naming ``source``: "SOURCE: not a WHAT of format EXPECTED (found ...)"."""
    if not isinstance(data, dict) or data.get("format") != expected:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise error(f"{source}: not a {what} of format {expected!r} (found {found!r})")
    return data


def read_json_object(path: str | Path, what: str, required: tuple[str, ...] = (),
                     file_format: str | None = None) -> dict:
    """The JSON object in ``path`` (a ``what``, e.g. "ensemble file"), holding every key of
    ``required`` and, when ``file_format`` is given, no ``"format"`` other than it (a file without
    one is read as that format: files written before formats were recorded); a UserError naming the
    file and the problem otherwise (a missing file, invalid JSON, not an object, another format, a
    missing key)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no {what} at {path}")
    what = ("an " if what[0] in "aeiou" else "a ") + what
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not {what} (not valid JSON: {error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not {what} (a JSON object was expected)")
    if file_format is not None and data.get("format", file_format) != file_format:
        raise UserError(f"{path}: {what} of format {data['format']!r}, which this version of fer-ensemble "
                        f"does not read (it reads {file_format!r})")
    if missing := [key for key in required if key not in data]:
        raise UserError(f"{path}: not {what} (no {', '.join(repr(k) for k in missing)})")
    return data


def json_text(value: object, indent: int | None = None, default=None) -> str:
    """``value`` as strict JSON text (``json.dumps`` with ``indent`` and ``default``): a NaN or an
    infinity, which JSON has no number for, is an OutputError rather than the bare ``NaN`` that JSON
    readers refuse. Every JSON output of the package (files, lines on stdout, server answers) is
    written through it."""
    try:
        return json.dumps(value, indent=indent, default=default, allow_nan=False)
    except ValueError as error:
        if "JSON compliant" not in str(error):  # a circular reference: a bug, not a value
            raise
        raise OutputError("a result holds NaN or infinity, which JSON cannot hold; it was not written "
                          "(a bug: please report it with the command that gave it)") from None


def file_digest(path: str | Path) -> str:
    """The SHA-256 of the file at ``path``, as 64 lowercase hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


EXTRAS = {
    "torch": "train", "torchvision": "train", "onnx": "train", "matplotlib": "plot",
    "fastapi": "server", "uvicorn": "server", "multipart": "server", "python_multipart": "server",
    "fastapi_offline": "server", "PIL": "server", "ray": "batch", "pyarrow": "batch", "fsspec": "batch",
    "sklearn": "adapt", "scipy": "adapt", "threadpoolctl": "adapt",
}
"""An optional dependency's top-level module name: the extra of pyproject.toml that installs it."""


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The one-line message for ``error``, a missing optional dependency of ``EXTRAS`` (naming the
    ``pip install 'fer-ensemble[extra]'`` that installs it); None for any other module."""
    top = (error.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    extra = EXTRAS[top]
    return f"this command needs the '{extra}' extra ({top} is not installed): pip install 'fer-ensemble[{extra}]'"
