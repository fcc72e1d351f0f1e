"""Inputs to tasks: files, folders, globs, manifests (CSV or Parquet with a path column) and URIs
(anything fsspec reads, e.g. ``s3://bucket/clips/*.mp4``); videos split into frame ranges."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2

from fer_ensemble.errors import UserError
from fer_ensemble.media.inputs import Inputs, expand_inputs, filesystem, is_uri
from fer_ensemble.media.kinds import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, extension

MANIFEST_EXTENSIONS = {".csv", ".parquet"}
"""Inputs read as manifests (a list of sources in a column) rather than as media."""


@dataclass(frozen=True)
class Task:
    """One unit of work: a photo, or the frames ``start`` to ``stop`` (exclusive; None: to the end)
    of a video."""

    source: str
    kind: str  # "image" or "video"
    start: int = 0
    stop: int | None = None

    def to_dict(self) -> dict:
        """The task as plain values (``source``, ``kind``, ``start``, ``stop``), as sent to a worker."""
        return asdict(self)


def kind_of(source: str) -> str | None:
    """"image" or "video" by the extension of a path or URI, None for another."""
    suffix = extension(source)
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def read_manifest(path: str, column: str) -> list[str]:
    """The non-empty values of ``column`` of a CSV (UTF-8, with or without a byte-order mark) or
    Parquet manifest, local or a URI, in order; a UserError for a missing file or column."""
    if is_uri(path):
        filesystem(path)  # a missing file system: one line
    import fsspec

    try:
        with fsspec.open(path, "rb") as f:
            if path.lower().endswith(".parquet"):
                import pyarrow.parquet as pq

                table = pq.read_table(f)
                if column not in table.column_names:
                    raise UserError(f"{path}: no {column!r} column (it has {', '.join(table.column_names)})")
                return [str(v) for v in table.column(column).to_pylist() if v]
            rows = list(csv.DictReader(line.decode("utf-8-sig") for line in f))  # Excel's byte-order mark too
    except FileNotFoundError:
        raise UserError(f"no manifest at {path}") from None
    if rows and column not in rows[0]:
        raise UserError(f"{path}: no {column!r} column (it has {', '.join(rows[0])})")
    return [row[column] for row in rows if row[column]]


def batch_inputs(items: list[str], manifest_column: str = "path", exclude: Path | None = None) -> Inputs:
    """Photo and video sources from the user's inputs, in order, each once (``media.expand_inputs``
    with videos and URIs: files, folders, globs, fsspec URIs), plus manifests: a ``.csv`` or
    ``.parquet`` input (local or a URI) lists sources in its ``manifest_column``, taken as they are.
    ``exclude``: the output folder, left out of folder scans. A manifest that lists nothing is
    ``empty``; a missing one, a manifest without the column or a URI scheme without its file system
    is a UserError."""
    found = Inputs(videos=True)
    for item in items:
        if extension(item) in MANIFEST_EXTENSIONS:
            listed = read_manifest(item, manifest_column)
            if listed:
                found.add(listed)
            else:
                found.empty.append(item)
        else:
            expand_inputs([item], exclude, remote=True, into=found)
    return found


def frame_count(source: str) -> int | None:
    """A local video's frame count from its header (None when unknown or not local)."""
    if is_uri(source):
        return None
    capture = cv2.VideoCapture(source)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return count or None


def plan_tasks(sources: list[str], chunk_frames: int, track: bool) -> list[Task]:
    """One task per photo; per video one task when tracking (ids run through the whole video), else
    one per ``chunk_frames`` frames, so a long video spreads over the workers."""
    tasks = []
    for source in sources:
        kind = kind_of(source) or "image"  # a manifest may name files without an extension
        if kind == "image":
            tasks.append(Task(source, "image"))
            continue
        count = None if track else frame_count(source)
        if count is None:
            tasks.append(Task(source, "video"))
            continue
        starts = list(range(0, count, chunk_frames))
        tasks += [Task(source, "video", start, None if start == starts[-1] else start + chunk_frames)
                  for start in starts]  # the last range runs to the real end, whatever the header said
    return tasks
