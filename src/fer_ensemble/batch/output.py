"""The batch output folder: ``faces/<key>.parquet`` (one row per face per frame) and
``sources/<key>.json`` (a source's summary) per source, ``summary.parquet`` over all of them.

A source is done when its summary exists without an error and records the settings of this run
(``work.recorded_settings``): a rerun skips it (``--overwrite`` does not), and redoes the ones that
failed or were made under other settings.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import json_text
from fer_ensemble.outputs import RowWriter, write_whole
from fer_ensemble.runtime.rows import COLUMN_TYPES, GEOMETRY_TYPES, FaceRow, row_columns, summarize_source


def column_types(geometry: bool = False) -> dict[str, str]:
    """The faces files' Arrow type names by column: ``rows.row_columns(geometry)`` with their
    ``rows.COLUMN_TYPES`` and ``GEOMETRY_TYPES``, in order."""
    types = {**COLUMN_TYPES, **GEOMETRY_TYPES}
    return {name: types[name] for name in row_columns(geometry)}


def source_key(source: str) -> str:
    """A file name for a source: its readable tail plus a hash of the whole path or URI."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", source.rstrip("/").split("/")[-1])[-60:]
    return f"{tail}-{hashlib.sha1(source.encode()).hexdigest()[:12]}"


class BatchOutput:
    """A batch run's output folder: ``faces/<key>.parquet`` (a source's face rows, ``row_columns(geometry)``)
    and ``sources/<key>.json`` (its summary), ``<key>`` a file-name-safe digest of the source
    (``source_key``); both folders are made when it is built."""

    def __init__(self, folder: str | Path, geometry: bool = False):
        self.folder = Path(folder)
        self.geometry = geometry
        """Whether the face rows carry the geometry columns (``batch --geometry``)."""
        (self.folder / "faces").mkdir(parents=True, exist_ok=True)
        (self.folder / "sources").mkdir(parents=True, exist_ok=True)

    def faces_path(self, source: str) -> Path:
        """Where ``source``'s face rows go (Parquet)."""
        return self.folder / "faces" / f"{source_key(source)}.parquet"

    def summary_path(self, source: str) -> Path:
        """Where ``source``'s summary goes (JSON)."""
        return self.folder / "sources" / f"{source_key(source)}.json"

    def summary(self, source: str) -> dict:
        """A source's summary, or {} before it is written."""
        path = self.summary_path(source)
        return json.loads(path.read_text()) if path.is_file() else {}

    def done(self, source: str, settings: dict) -> bool:
        """Whether ``source`` has a summary without an error, made under ``settings`` (what its
        summary records): a rerun skips it unless ``--overwrite``."""
        summary = self.summary(source)
        return bool(summary) and summary.get("error") is None and summary.get("settings") == settings

    def changed(self, source: str, settings: dict) -> list[str]:
        """The keys of ``settings`` that differ from those ``source``'s summary records, when it was
        done without an error under others (``["version"]`` for a summary that records none: an
        earlier version's); [] otherwise."""
        summary = self.summary(source)
        if not summary or summary.get("error") is not None:
            return []
        if not (recorded := summary.get("settings")):
            return ["version"]
        return [key for key in dict.fromkeys([*settings, *recorded]) if recorded.get(key) != settings.get(key)]

    def write_source(self, source: str, kind: str | None, rows: list[dict], frames_read: int, frames_processed: int,
                     fps: float | None, errors: list[str], settings: dict | None = None) -> dict:
        """Rows (sorted by frame and face) and the summary, each written whole then renamed into place;
        the summary records ``settings`` (``work.recorded_settings`` for the source's kind). An earlier
        summary goes first, so a run stopped between the two files leaves the source to be done again,
        never new rows under an old summary."""
        self.summary_path(source).unlink(missing_ok=True)
        rows = sorted(rows, key=lambda r: (r["frame"] is None, r["frame"] or 0, r["face"] or 0))
        types = column_types(self.geometry)
        with RowWriter(self.faces_path(source), list(types), types=types) as faces:
            faces.write(rows)
        summary = {**summarize_source(source, kind, rows, frames_read, frames_processed, fps, errors),
                   "settings": settings}
        write_whole(self.summary_path(source), json_text(summary, indent=1))
        return summary

    def write_failure(self, source: str, message: str) -> dict:
        """A source that could not be read at all (an input that names nothing): its one error row
        and a summary holding ``message``, of no kind (None)."""
        return self.write_source(source, None, [FaceRow.failure(source, message).to_dict()], 0, 0, None, [message])

    def write_summary(self, sources: list[str]) -> Path:
        """``summary.parquet``: one row per source, from the sources' summaries."""
        summaries = [json.loads(self.summary_path(s).read_text()) for s in sources if self.summary_path(s).is_file()]
        with RowWriter(self.folder / "summary.parquet") as table:  # types inferred from the summaries
            table.write({**{k: v for k, v in s.items() if k not in ("mean_probabilities", "settings")},
                         **{f"mean_{e}": s["mean_probabilities"].get(e) for e in EMOTIONS},
                         "settings": json_text(s["settings"]) if s.get("settings") else None} for s in summaries)
        return table.path
