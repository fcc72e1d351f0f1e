"""Inputs to tasks: files, folders, globs, manifests (CSV or Parquet with a path column) and URIs
(anything fsspec reads, e.g. ``s3://bucket/clips/*.mp4``); videos split into frame ranges."""

from __future__ import annotations

import csv
import glob
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2

from fer_ensemble.errors import UserError
from fer_ensemble.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

MANIFEST_EXTENSIONS = {".csv", ".parquet"}


@dataclass(frozen=True)
class Task:
    """One unit of work: a photo, or the frames ``start`` to ``stop`` (exclusive; None: to the end)
    of a video."""

    source: str
    kind: str  # "image" or "video"
    start: int = 0
    stop: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def is_uri(item: str) -> bool:
    return "://" in item


def kind_of(source: str) -> str | None:
    suffix = Path(source.split("?")[0]).suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def read_manifest(path: str, column: str) -> list[str]:
    """The ``column`` of a CSV or Parquet manifest (local or a URI)."""
    if is_uri(path):
        filesystem(path)  # a missing file system: one line
    import fsspec

    with fsspec.open(path, "rb") as f:
        if path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(f)
            if column not in table.column_names:
                raise UserError(f"{path}: no {column!r} column (it has {', '.join(table.column_names)})")
            return [str(v) for v in table.column(column).to_pylist() if v]
        rows = list(csv.DictReader(line.decode("utf-8-sig") for line in f))  # Excel's byte-order mark too
    if rows and column not in rows[0]:
        raise UserError(f"{path}: no {column!r} column (it has {', '.join(rows[0])})")
    return [row[column] for row in rows if row[column]]


CLOUD_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
"""fsspec's file systems of the ``cloud`` extra, by URI scheme."""


def filesystem(uri: str):
    """fsspec's (file system, token, paths) for ``uri``; a UserError naming the package and the
    extra when the scheme's file system is not installed (fsspec raises a bare ImportError)."""
    import fsspec

    try:
        return fsspec.get_fs_token_paths(uri)
    except ImportError:
        scheme = uri.split("://", 1)[0]
        package = CLOUD_PACKAGES.get(scheme)
        install = f"pip install 'fer-ensemble[cloud]' ({package})" if package else "install fsspec's package for it"
        raise UserError(f"{uri}: reading {scheme}:// needs a file system that is not installed: {install}") from None


def _expand_uri(item: str) -> list[str]:
    fs, _, paths = filesystem(item)
    protocol = item.split("://", 1)[0]
    found = []
    for path in paths:
        if fs.isdir(path):
            found += sorted(p for p in fs.find(path) if kind_of(p))
        elif fs.exists(path):
            found.append(path)
    return [f"{protocol}://{p}" if not p.startswith(f"{protocol}://") else p for p in found]


def expand_sources(items: list[str], manifest_column: str = "path") -> tuple[list[str], list[str]]:
    """Photo and video sources from the user's inputs, in order, without duplicates; plus the inputs
    that named nothing."""
    sources: list[str] = []
    missing: list[str] = []
    for item in items:
        if Path(item.split("?")[0]).suffix.lower() in MANIFEST_EXTENSIONS:
            found = read_manifest(item, manifest_column)
        elif is_uri(item):
            found = _expand_uri(item)
        elif Path(item).is_dir():
            found = sorted(str(p) for p in Path(item).rglob("*") if p.is_file() and kind_of(str(p)))
        elif Path(item).is_file():
            found = [item]
        else:
            found = sorted(m for m in glob.glob(item, recursive=True) if Path(m).is_file() and kind_of(m))
        if not found:
            missing.append(item)
        sources += [s for s in found if s not in sources]
    return sources, missing


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
