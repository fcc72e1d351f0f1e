"""The face row: one face in one frame of one source, the schema every table of faces shares (the
batch command's Parquet rows, the video and predict commands' CSV columns), and the summaries made
from such rows (per source, per track). NumPy only: the video command uses it too."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fer_ensemble.constants import BLENDSHAPES, EMOTIONS

FACE_COLUMNS = ["x", "y", "w", "h", "label", "score", *EMOTIONS, "held"]
"""The per-face columns of every table: the box (pixels), the winning emotion, its score, every
emotion's probability and ``held`` (1: a tracked face the detector missed in this frame, its last
box and answer kept for a moment; left out of every count and track span of the summaries)."""

GEOMETRY_COLUMNS = ["yaw", "pitch", "roll", "turned", *BLENDSHAPES]
"""The columns a table gains with ``--geometry``: the head pose (degrees), ``turned`` (1 or true:
past the measured readable range) and the 51 blendshapes by name; empty (null) for a face without
geometry (held, or not found by the landmarks model). The 478 landmarks go into the JSON outputs
only: 1434 numbers a face would make a long video's table (and a batch driver's memory) ten
times larger."""

ROW_COLUMNS = ["source", "frame", "time_s", "face", "x", "y", "w", "h", "track_id", "relative", "held", "label",
               "score", *EMOTIONS, "error"]
"""A ``FaceRow.to_dict()``'s keys, in the batch Parquet files' column order."""

COLUMN_TYPES = {"source": "string", "frame": "int64", "time_s": "float64", "face": "int64", "x": "int64",
                "y": "int64", "w": "int64", "h": "int64", "track_id": "int64", "relative": "bool_", "held": "bool_", "label": "string",
                "score": "float64", **dict.fromkeys(EMOTIONS, "float64"), "error": "string"}
"""Each column's Arrow type name (``pyarrow``'s function of that name makes it)."""

GEOMETRY_TYPES = {"yaw": "float64", "pitch": "float64", "roll": "float64", "turned": "bool_",
                  **dict.fromkeys(BLENDSHAPES, "float64")}
"""The Arrow type names of ``GEOMETRY_COLUMNS`` in batch's Parquet (as ``COLUMN_TYPES``)."""


CSV_DECIMALS = {"time_s": 3, "yaw": 1, "pitch": 1, "roll": 1}
"""The places a CSV table of faces gives these columns' fractions (``outputs.RowWriter``'s
``decimals``; 4 for every other: the score, the probabilities, the blendshapes)."""


def face_columns(geometry: bool = False) -> list[str]:
    """``FACE_COLUMNS``, then ``GEOMETRY_COLUMNS`` with ``geometry``: the face's part of the predict
    and video commands' CSV rows."""
    return [*FACE_COLUMNS, *GEOMETRY_COLUMNS] if geometry else FACE_COLUMNS


def row_columns(geometry: bool = False) -> list[str]:
    """``ROW_COLUMNS``, with ``geometry`` the ``GEOMETRY_COLUMNS`` before ``error``."""
    return ROW_COLUMNS if not geometry else [*ROW_COLUMNS[:-1], *GEOMETRY_COLUMNS, "error"]


@dataclass(frozen=True)
class FaceRow:
    """One face in one frame of ``source`` (a path or URI), or a source that failed (``error`` set,
    the face's fields None). ``frame``: the frame index from 0 (0 for a photo); ``time_s``: the
    frame's own time in seconds (None for a photo); ``face``: its index in the frame, left to right;
    ``box``: (x, y, w, h) in image pixels; ``track_id``: None without tracking; ``relative``: read
    against the track's resting face (``--auto-resting-face``); ``held``: a tracked face the
    detector missed in this frame, shown with its last box and answer (not counted in summaries);
    ``probabilities``: emotion -> probability (summing to 1); ``geometry``: the face's pose,
    ``turned`` and blendshapes (``geometry_values``) when it has them, else None."""

    source: str
    frame: int | None = None
    time_s: float | None = None
    face: int | None = None
    box: tuple[int, int, int, int] | None = None
    track_id: int | None = None
    relative: bool | None = None
    held: bool | None = None
    label: str | None = None
    score: float | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    geometry: dict | None = None

    @classmethod
    def of(cls, source: str, frame: int, time_s: float | None, index: int, face) -> FaceRow:
        """The row of a recognised ``face`` (a ``fer_ensemble.runtime.face.Face``)."""
        return cls(source, frame, time_s, index, tuple(face.box), face.track_id, bool(face.relative),
                   bool(face.held),
                   face.label, face.score, dict(face.probabilities), geometry=geometry_values(face))

    @classmethod
    def failure(cls, source: str, message: str) -> FaceRow:
        """The one row of a source that could not be read: every face field None."""
        return cls(source, error=message)

    def to_dict(self, geometry: bool = False) -> dict:
        """The flat row: ``row_columns(geometry)`` in order (the box as x, y, w, h, an emotion's
        probability under its name, a blendshape's score under its name), None where absent."""
        box = self.box if self.box is not None else (None,) * 4
        probabilities = self.probabilities or {}
        row = {"source": self.source, "frame": self.frame, "time_s": self.time_s, "face": self.face,
               **dict(zip("xywh", box)), "track_id": self.track_id, "relative": self.relative, "held": self.held,
               "label": self.label, "score": self.score, **{e: probabilities.get(e) for e in EMOTIONS}}
        if geometry:
            values = self.geometry or {}
            row.update({name: values.get(name) for name in GEOMETRY_COLUMNS})
        return {**row, "error": self.error}


def geometry_values(face) -> dict | None:
    """A ``Face``'s geometry as the flat values of ``GEOMETRY_COLUMNS``, or None without."""
    if face.pose is None:
        return None
    return {**dict(zip(("yaw", "pitch", "roll"), (float(v) for v in face.pose))), "turned": bool(face.turned),
            **{name: float(face.blendshapes[name]) for name in BLENDSHAPES}}


def face_rows(source: str, frame: int, time_s: float | None, faces, geometry: bool = False) -> list[dict]:
    """``FaceRow.to_dict(geometry)`` of each face of one frame, numbered left to right from 0."""
    return [FaceRow.of(source, frame, time_s, i, f).to_dict(geometry) for i, f in enumerate(faces)]


def _get(row: FaceRow | dict, key: str):
    """A flat row's ``key``, or a ``FaceRow``'s field or probability of that name."""
    if isinstance(row, dict):
        return row[key]
    return getattr(row, key) if key in FaceRow.__dataclass_fields__ else (row.probabilities or {})[key]


def _seen(row: FaceRow | dict) -> bool:
    """Whether ``row`` is a face the detector found in its frame: neither a failure row nor a held
    face (``held``), which summaries leave out."""
    held = row.get("held") if isinstance(row, dict) else row.held  # rows written before held: none
    return _get(row, "error") is None and not held


def _mean(rows: Sequence[FaceRow | dict], classes: Sequence[str]) -> np.ndarray | None:
    return np.mean([[_get(r, c) for c in classes] for r in rows], axis=0) if rows else None


def summarize_source(source: str, kind: str | None, rows: list[dict], frames_read: int, frames_processed: int,
                     fps: float | None, errors: list[str], classes: Sequence[str] = EMOTIONS) -> dict:
    """A source's summary (the batch command's ``sources/<key>.json`` and ``summary.parquet`` row)
    from its flat rows (``FaceRow.to_dict()``; failure rows and held faces left out of the figures): ``faces``,
    ``frames_with_faces``, the ``dominant`` emotion of the mean probabilities (None without faces),
    ``mean_probabilities`` (6 decimals; {} without faces) and ``error`` (the errors joined by "; ",
    None for none), beside the arguments given."""
    faces = [r for r in rows if _seen(r)]
    mean = _mean(faces, classes)
    return {
        "source": source, "kind": kind, "frames_read": frames_read, "frames_processed": frames_processed,
        "fps": fps, "faces": len(faces), "frames_with_faces": len({r["frame"] for r in faces}),
        "dominant": classes[int(np.argmax(mean))] if mean is not None else None,
        "mean_probabilities": {c: round(float(p), 6) for c, p in zip(classes, mean)} if mean is not None else {},
        "error": "; ".join(errors) if errors else None,
    }


def summarize_tracks(rows: Iterable[FaceRow | dict], classes: Sequence[str] = EMOTIONS) -> dict[str, dict]:
    """Per track (the video command's ``summary.json`` ``tracks``), from rows in frame order
    (``FaceRow``s, whose probabilities may hold any ``classes``, or flat ``FaceRow.to_dict()``s;
    failure rows and held faces left out, so a track's span ends where it was last detected), keyed
    by the track id as text, ids ascending:
    ``first_seen_s`` and ``last_seen_s`` (seconds, 3 decimals), ``frames``, the ``dominant``
    emotion of the mean probabilities, ``label_frames`` (frames per winning label, labels that won
    none left out) and ``mean_probabilities`` (4 decimals)."""
    tracks: dict = {}
    for row in rows:
        if _seen(row):
            tracks.setdefault(_get(row, "track_id"), []).append(row)
    summary = {}
    for track_id, seen in sorted(tracks.items()):
        mean = _mean(seen, classes)
        assert mean is not None  # seen holds one row at least
        labels = [_get(r, "label") for r in seen]
        summary[str(track_id)] = {
            "first_seen_s": round(_get(seen[0], "time_s"), 3),
            "last_seen_s": round(_get(seen[-1], "time_s"), 3),
            "frames": len(seen),
            "dominant": classes[int(np.argmax(mean))],
            "label_frames": {c: labels.count(c) for c in classes if labels.count(c)},
            "mean_probabilities": {c: round(float(p), 4) for c, p in zip(classes, mean)},
        }
    return summary


def timeline_rows(timeline: Iterable[dict], source: str = "") -> list[FaceRow]:
    """The ``FaceRow``s of the video command's timeline (``timeline.jsonl``'s records: ``frame``,
    ``time`` in seconds and ``faces``, each a ``Face.to_dict()``), for ``summarize_tracks``."""
    return [FaceRow(source, record["frame"], record["time"], i, tuple(f["box"]), f["track_id"], f["relative"],
                    f.get("held", False), f["label"], f["score"], f["probabilities"])
            for record in timeline for i, f in enumerate(record["faces"])]
