"""Issue 24, item 7: one face-row schema (batch rows, Parquet schema, CSV cells) and one home for
the summaries made from face rows (per source for batch, per track for video)."""

from __future__ import annotations

import pytest
from support import need

from fer_ensemble.batch import output, work
from fer_ensemble.constants import EMOTIONS
from fer_ensemble.runtime.detection import TurnedBox
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.rows import (
    FACE_COLUMNS,
    ROW_COLUMNS,
    FaceRow,
    face_cells,
    face_rows,
    summarize_source,
    summarize_tracks,
    timeline_rows,
)


def face(label: str, p: float, track_id: int | None = None, x: int = 10) -> Face:
    probabilities = dict.fromkeys(EMOTIONS, (1 - p) / 7) | {label: p}
    return Face(TurnedBox((x, 20, 30, 30), 12.0), label, p, probabilities, track_id)


def test_a_row_has_the_columns_the_parquet_schema_has() -> None:
    row = FaceRow.of("clip.mp4", 3, 0.12, 1, face("happiness", 0.7, 2)).to_dict()
    assert list(row) == ROW_COLUMNS and ROW_COLUMNS[4:8] == FACE_COLUMNS[:4]
    assert (row["x"], row["y"], row["w"], row["h"], row["track_id"], row["happiness"]) == (10, 20, 30, 30, 2, 0.7)
    assert row["relative"] is False
    failed = work.failure("bad.jpg", "not a readable image").rows[0]
    assert list(failed) == ROW_COLUMNS and failed["error"] == "not a readable image"
    assert all(failed[c] is None for c in ROW_COLUMNS if c not in ("source", "error"))
    need("pyarrow")
    assert output.schema().names == ROW_COLUMNS and str(output.schema().field("track_id").type) == "int64"
    assert str(output.schema().field("relative").type) == "bool"


def test_csv_cells() -> None:
    cells = face_cells(face("anger", 0.5))
    assert len(cells) == len(FACE_COLUMNS) and cells[:6] == [10, 20, 30, 30, "anger", "0.5000"]
    assert cells[6 + EMOTIONS.index("neutral")] == f"{0.5 / 7:.4f}"


def test_per_source_summary() -> None:
    rows = (face_rows("v.mp4", 0, 0.0, [face("happiness", 0.9), face("sadness", 0.5, x=50)])
            + face_rows("v.mp4", 2, 0.08, [face("happiness", 0.7)]) + work.failure("v.mp4", "late").rows)
    summary = summarize_source("v.mp4", "video", rows, 3, 3, 25.0, ["frames 2-: late"])
    assert (summary["faces"], summary["frames_with_faces"], summary["dominant"]) == (3, 2, "happiness")
    assert summary["mean_probabilities"]["happiness"] == pytest.approx((0.9 + 0.5 / 7 + 0.7) / 3, abs=1e-6)
    assert summary["error"] == "frames 2-: late"
    assert summarize_source("x.jpg", "image", [], 1, 1, None, [])["dominant"] is None


def test_per_track_summary_from_the_video_timeline() -> None:
    timeline = [{"frame": 0, "time": 0.0, "faces": [face("happiness", 0.9, 1).to_dict(),
                                                   face("anger", 0.6, 2, x=60).to_dict()]},
                {"frame": 1, "time": 0.0417, "faces": [face("sadness", 0.6, 1).to_dict()]},
                {"frame": 2, "time": 0.0833, "faces": [face("happiness", 0.8, 1).to_dict()]}]
    tracks = summarize_tracks(timeline_rows(timeline, "clip.mp4"))
    assert list(tracks) == ["1", "2"]
    one = tracks["1"]
    assert (one["first_seen_s"], one["last_seen_s"], one["frames"], one["dominant"]) == (0.0, 0.083, 3, "happiness")
    assert one["label_frames"] == {"happiness": 2, "sadness": 1}
    assert one["mean_probabilities"]["sadness"] == round((0.1 / 7 + 0.6 + 0.2 / 7) / 3, 4)
    assert tracks["2"]["frames"] == 1 and tracks["2"]["label_frames"] == {"anger": 1}
    flat = [r.to_dict() for r in timeline_rows(timeline)]  # the batch rows summarise the same
    assert summarize_tracks(flat) == tracks
