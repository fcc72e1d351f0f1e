"""Where a command's outputs go, one place for every command: an output path is checked before any
work (a folder that is, or holds, an input is refused, and so is a file in the way, an input, or a
file the command did not write) and made when the work starts, so nothing of the user's is ever
replaced. A folder of outputs records the command and settings that made it (``write_manifest``).

One staging rule for every file a command writes: it is written under a hidden partial name beside
its own (``partial_path``) and renamed onto that name when complete (``staged``, ``written_whole``,
``RowWriter``), so a file is there whole or not at all: a reader never sees half of one, a crash or
a kill leaves at most a hidden partial and any earlier output of the same name as it was; so does
a Ctrl-C, unless the command catches it and closes its files for what was read so far (predict's
CSV, video's outputs: docs/command-line.md, "Outputs never replace inputs"). ``export`` stages its
whole folder the same way. Depends on ``errors`` (and NumPy)
only.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from fer_ensemble.errors import OutputError, UserError, json_text

MANIFEST = "fer-ensemble.json"
"""The file a folder of outputs records its command and settings in (``write_manifest``)."""
MANIFEST_FORMAT = "fer-ensemble/outputs/v1"
"""The ``format`` a manifest records (``check_manifest`` replaces only files of this format)."""


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a folder for outputs, not created yet: a UserError when a file is in the way (the
    path itself or a folder above it), so that a command can refuse before it does any work."""
    folder = Path(path)
    blocker = _file_in_the_way(folder)
    if blocker == folder:
        raise UserError(f"{option} {folder} is a file; give a folder for the outputs")
    if blocker is not None:
        raise UserError(f"{option} {folder}: {blocker} is a file, not a folder; give a folder for the outputs")
    return folder


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest of ``path`` and its parents that exists, when it is not a folder; else None."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return None
        if candidate.exists():
            return candidate
    return None


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a folder for outputs, created; a UserError (one line naming it, exit 2) when a
    file is in the way or the folder cannot be made (no permission, a read-only file system)."""
    folder = check_output_folder(path, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{option} {folder}: cannot make this folder ({error.strerror or error})") from None
    return folder


@contextmanager
def output_folder_for_work(path: str | Path, option: str = "--out") -> Iterator[Path]:
    """``output_folder(path)`` for the work in the ``with`` block: a folder this made is removed again
    when the work refuses (a UserError) before writing anything into it, so a refusal found only
    after the folder was checked (a missing option, a run without weights) leaves nothing behind."""
    made = not Path(path).exists()
    folder = output_folder(path, option)
    try:
        yield folder
    except UserError:
        if made and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def check_apart(out: str | Path, named: Iterable[str], files: Iterable[str | Path], what: str,
                option: str = "--out") -> Path:
    """``out`` as an output folder (``check_output_folder``) that is none of the input folders
    ``named`` and holds none of the input ``files`` (``what`` they are, e.g. "photos"): a
    UserError otherwise, so that no output lands on an input, or among the inputs where the next run
    would read it. The one rule of every command that writes outputs beside what it reads."""
    folder = check_output_folder(out, option)
    here = folder.resolve()
    if any(Path(item).is_dir() and Path(item).resolve() == here for item in named):
        raise UserError(f"{option} {folder} is an input folder: the outputs would sit among (and could replace) "
                        f"your {what}; choose another folder")
    if any(Path(file).is_file() and Path(file).resolve().parent == here for file in files):
        raise UserError(f"{option} {folder} holds input {what}: the outputs would sit among (and could replace) "
                        f"your {what}; choose another folder")
    return folder


def check_output_file(path: str | Path, inputs: Iterable[str | Path], option: str, ours: str) -> Path:
    """``path`` as a file to write: a UserError when it is a folder, sits under a file, is one of
    the ``inputs``, or already exists and is neither empty nor a file this command wrote (its first
    line starting with ``ours``), so that an output never replaces what the user made."""
    file = Path(path)
    if file.is_dir():
        raise UserError(f"{option} {file} is a folder; give a file name")
    _check_folder_of(file, option)
    if file.exists() and any(Path(p).resolve() == file.resolve() for p in inputs):
        raise UserError(f"{option} {file} is an input; give a new file name")
    if file.is_file() and file.stat().st_size and not _starts_with(file, ours):
        raise UserError(f"{option} {file} already exists and is not an earlier output of this command; give a "
                        "new file name (or remove the file first)")
    return file


def _check_folder_of(file: Path, option: str) -> Path:
    """``file``, after a UserError when a file stands where a folder above it should be."""
    if (blocker := _file_in_the_way(file.parent)) is not None:
        raise UserError(f"{option} {file}: {blocker} is a file, not a folder; give a file in a folder")
    return file


def _starts_with(path: Path, text: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(text.encode())) == text.encode()


def output_file(path: str | Path, option: str) -> Path:
    """``path`` with its folder made; a UserError naming ``option`` and ``path`` when a file is in
    the way of that folder or it cannot be made (no permission, a read-only file system)."""
    file = _check_folder_of(Path(path), option)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{option} {file}: cannot make its folder {file.parent} "
                        f"({error.strerror or error})") from None
    return file


def unique_path(folder: Path, name: str, used: set[str]) -> Path:
    """``folder/name``, with a numeric suffix when an earlier input already took that name."""
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}{suffix}"
    used.add(candidate)
    return folder / candidate


def partial_path(path: str | Path) -> Path:
    """The hidden file a write of ``path`` goes to first, beside it: ``.STEM.PID.partial.SUFFIX`` (the
    suffix kept, as OpenCV and matplotlib choose a file's format by it; folder scans pass over such
    names, ``is_partial``)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


PARTIAL_NAME = re.compile(r"\..*\.\d+\.partial(\.[^.]*)?")
"""A ``partial_path``'s file name (``.STEM.PID.partial.SUFFIX``)."""


def is_partial(name: str) -> bool:
    """Whether the file name ``name`` is a ``partial_path``'s: an output being written, or one a kill
    left behind, which folder scans pass over."""
    return PARTIAL_NAME.fullmatch(name) is not None


def cannot_write(path: str | Path, error: OSError) -> OutputError:
    """The one line an output that cannot be written gets: ``PATH: cannot write (why)``."""
    return OutputError(f"{path}: cannot write ({error.strerror or error})")


def publish(partial: Path, path: str | Path) -> Path:
    """``partial`` (a ``partial_path``, written and closed) renamed onto ``path``, replacing a file or
    a symbolic link there (never writing through it); OutputError, one line, when it cannot be."""
    try:
        partial.replace(path)
    except OSError as error:
        raise cannot_write(path, error) from None
    return Path(path)


@contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """The ``partial_path`` of ``path`` to write in the ``with`` block, renamed onto ``path`` when the
    block ends (a symbolic link there is replaced, never written through: the file it names, which
    may be an input, stays as it was) and removed when the block fails or is interrupted, leaving
    ``path`` as it was; OutputError when the rename fails. The block must close what it opened on
    the partial before it ends."""
    path = Path(path)
    partial = partial_path(path)
    try:
        yield partial
        publish(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def written_whole(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(partial)`` onto ``path``'s hidden partial file, then renamed onto ``path`` (``staged``):
    a reader never sees half a file and a kill or a Ctrl-C leaves at most the hidden partial, never a
    damaged ``path``; its path."""
    with staged(path) as partial:
        write(partial)
    return Path(path)


def write_whole(path: str | Path, text: str) -> Path:
    """``text`` written to ``path`` whole or not at all (``written_whole``); its path."""
    return written_whole(path, lambda partial: partial.write_text(text))


TABLE_FORMATS = (".csv", ".jsonl", ".parquet")
"""The table files ``RowWriter`` writes, by their names' suffix."""


class RowWriter:
    """Rows (mappings) into one table file, whose format is ``format`` or else its name's suffix
    (``TABLE_FORMATS``):

    - ``.csv``: a header of ``columns``, then a line per row: None as an empty cell, True / False as
      1 / 0, a fraction to ``decimals.get(column, 4)`` places;
    - ``.jsonl``: a JSON object per row, of its ``columns`` (all its keys without ``columns``);
    - ``.parquet``: ``columns`` of the Arrow ``types`` named (``{"x": "int64", ...}``, inferred from
      the rows without ``types``; written in groups of ``group_rows`` rows).

    The one writer of every table of faces (``predict --csv``, ``video``'s timeline, ``batch``'s
    Parquet). The file is written under its ``partial_path`` and renamed onto ``path`` by ``close``
    (the end of a ``with`` block); an error or a Ctrl-C that leaves the block, or ``discard``, removes
    the partial and leaves ``path`` as it was (a command that keeps the rows read so far catches the
    Ctrl-C inside the block). UserError for another suffix; OutputError when the file cannot be
    written."""

    def __init__(self, path: str | Path, columns: Sequence[str] | None = None, *, types: Mapping[str, str] | None = None,
                 decimals: Mapping[str, int] | None = None, group_rows: int = 65536, format: str | None = None):
        self.path = Path(path)
        self.format = f".{format.lstrip('.')}" if format else self.path.suffix.lower()
        if self.format not in TABLE_FORMATS:
            raise UserError(f"{self.path}: a table is one of {', '.join(TABLE_FORMATS)} (by its name's ending)")
        if columns is None and (self.format == ".csv" or types is not None):
            raise ValueError("a CSV table, or one with types, needs its columns")
        self.columns = list(columns) if columns is not None else None
        self.types, self.decimals, self.group_rows = types, dict(decimals or {}), group_rows
        self.partial = partial_path(self.path)
        self.closed = False
        self._buffer: list[dict] = []
        self._parquet: Any = None  # a pyarrow.parquet.ParquetWriter, from the first group written
        self._file: IO[str] | None = None
        if self.format != ".parquet":
            self._file = self._open()
            if self.format == ".csv":
                self._csv = csv.writer(self._file)
                self._csv.writerow(self.columns or ())

    def _open(self) -> IO[str]:
        try:
            return open(self.partial, "w", newline="")
        except OSError as error:
            raise cannot_write(self.path, error) from None

    def write(self, rows: Iterable[Mapping]) -> None:
        """Append ``rows`` (mappings: a column a row lacks is empty, None; other keys are left out)."""
        for row in rows:
            if self.format == ".csv":
                self._csv.writerow([self._cell(name, row.get(name)) for name in self.columns or ()])
            elif self.format == ".jsonl":
                record = row if self.columns is None else {name: row.get(name) for name in self.columns}
                assert self._file is not None
                self._file.write(json_text(record) + "\n")
            else:
                self._buffer.append(dict(row) if self.columns is None else {name: row.get(name) for name in self.columns})
                if self.types is not None and len(self._buffer) >= self.group_rows:
                    self._write_group()

    def _cell(self, name: str, value: object) -> object:
        if value is None:
            return ""
        if isinstance(value, (numbers.Integral, np.bool_)):  # True / False as 1 / 0
            return int(value)
        if isinstance(value, numbers.Real):
            return f"{value:.{self.decimals.get(name, 4)}f}"
        return value

    def _schema(self):
        import pyarrow as pa

        if self.types is None:
            return None
        return pa.schema([(name, getattr(pa, self.types[name])()) for name in self.columns or ()])

    def _write_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._buffer, schema=self._schema())
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(str(self.partial), table.schema)
        self._parquet.write_table(table)
        self._buffer = []

    def close(self) -> Path:
        """Finish the file and rename it onto ``path`` (once; a second call does nothing); its path."""
        if self.closed:
            return self.path
        try:
            if self.format == ".parquet":
                if self._buffer or self._parquet is None:
                    self._write_group()
                self._parquet.close()
            else:
                assert self._file is not None
                self._file.close()
            publish(self.partial, self.path)
        except OSError as error:
            self.discard()
            raise cannot_write(self.path, error) from None
        except BaseException:  # a Ctrl-C while finishing, a row Arrow refuses: no partial left behind
            self.discard()
            raise
        self.closed = True
        return self.path

    def discard(self) -> None:
        """Stop writing and remove the partial file: ``path`` stays as it was."""
        self.closed = True
        for handle in (self._file, self._parquet):
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # closing what failed: the partial goes anyway
                    pass
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


def check_manifest(folder: str | Path, command: str) -> Path:
    """``folder/MANIFEST``, after a UserError (one line) when a file of that name is there and is not
    a manifest of ours, or is another command's (its outputs share the folder: the manifest would no
    longer say what made them): what a command checks before its work, as ``write_manifest`` does."""
    path = Path(folder) / MANIFEST
    if path.exists():
        try:
            found = json.loads(path.read_text())
            ours = found.get("format") == MANIFEST_FORMAT
        except (ValueError, AttributeError, OSError):
            ours, found = False, {}
        if not ours:
            raise UserError(f"{path} exists and is not a manifest of ours; move it, or choose another folder")
        if found.get("command") != command:
            raise UserError(f"{folder} holds the outputs of fer-ensemble {found.get('command')}; give {command} "
                            "a folder of its own")
    return path


def write_manifest(folder: str | Path, command: str, settings: dict, version: str) -> Path:
    """``folder/MANIFEST``: the ``command`` and its ``settings`` (plain JSON values) that made the
    outputs in ``folder``, with the package ``version``; written whole, replacing only an earlier
    manifest (UserError, one line, for a file of that name that is not one)."""
    path = check_manifest(folder, command)
    return write_whole(path, json_text({"format": MANIFEST_FORMAT, "command": command, "version": version,
                                        "settings": settings}, indent=1, default=str) + "\n")


def recorded_args(args: object, left_out: Iterable[str] = ("handler", "verbose")) -> dict:
    """A command's parsed options (an ``argparse.Namespace``) as a manifest's settings: every option
    but ``left_out`` (paths, and numbers JSON has none for, as their text)."""
    def plain(value: object) -> object:
        return str(value) if isinstance(value, float) and not math.isfinite(value) else value

    return {key: plain(value) for key, value in vars(args).items() if key not in set(left_out)}
