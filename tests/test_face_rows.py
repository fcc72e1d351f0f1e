"""Issue 24, item 7: one face-row schema (batch rows, Parquet schema, CSV cells) and one home for
the summaries made from face rows (per source for batch, per track for video); issue 34: one row
writer for CSV, JSONL and Parquet (``outputs.RowWriter``), staged like every output file."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from support import need

from fer_ensemble.batch import output, work
from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import OutputError, UserError
from fer_ensemble.outputs import RowWriter, is_partial, partial_path, write_whole
from fer_ensemble.runtime.detection import TurnedBox
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.rows import (
    CSV_DECIMALS,
    FACE_COLUMNS,
    GEOMETRY_COLUMNS,
    ROW_COLUMNS,
    FaceRow,
    face_columns,
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
    types = output.column_types()
    assert list(types) == ROW_COLUMNS and (types["track_id"], types["relative"]) == ("int64", "bool_")
    assert list(output.column_types(geometry=True)) == [*ROW_COLUMNS[:-1], *GEOMETRY_COLUMNS, "error"]


def test_csv_cells(tmp_path: Path) -> None:
    """The CSV of the predict and video commands: box in pixels, 4 decimals, held and relative as 0/1,
    time to 3 decimals, empty cells for what a face lacks (geometry it was not given)."""
    columns = ["frame", "time_s", "track_id", "relative", *face_columns(geometry=True)]
    with RowWriter(tmp_path / "t.csv", columns, decimals=CSV_DECIMALS) as writer:
        writer.write([FaceRow.of("v.mp4", 4, 0.16666, 0, face("anger", 0.5)).to_dict(geometry=True)])
    header, cells = list(csv.reader((tmp_path / "t.csv").open()))
    assert header == columns and len(cells) == len(columns)
    assert cells[:10] == ["4", "0.167", "", "0", "10", "20", "30", "30", "anger", "0.5000"]
    assert cells[10 + EMOTIONS.index("neutral")] == f"{0.5 / 7:.4f}" and cells[10 + len(EMOTIONS)] == "0"
    assert cells[len(columns) - len(GEOMETRY_COLUMNS):] == [""] * len(GEOMETRY_COLUMNS)
    assert face_columns() == FACE_COLUMNS


def test_one_row_writer_for_csv_jsonl_and_parquet(tmp_path: Path) -> None:
    rows = face_rows("v.mp4", 0, 0.0, [face("happiness", 0.9), face("sadness", 0.5, x=50)])
    with RowWriter(tmp_path / "rows.jsonl") as writer:
        writer.write(rows)
    assert [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()] == rows
    with RowWriter(tmp_path / "some.jsonl", ["x", "label"]) as writer:
        writer.write(rows)
    assert json.loads((tmp_path / "some.jsonl").read_text().splitlines()[1]) == {"x": 50, "label": "sadness"}
    with pytest.raises(UserError, match="csv, .jsonl, .parquet"):
        RowWriter(tmp_path / "rows.xlsx", ["x"])
    with RowWriter(tmp_path / "faces.txt", ["x"], format="csv") as writer:  # predict --csv: any name
        writer.write(rows)
    assert (tmp_path / "faces.txt").read_text().splitlines() == ["x", "10", "50"]
    need("pyarrow")
    import pyarrow.parquet as pq

    types = output.column_types()
    with RowWriter(tmp_path / "rows.parquet", list(types), types=types, group_rows=1) as writer:  # two groups
        writer.write(rows)
    table = pq.read_table(tmp_path / "rows.parquet")
    assert table.schema.names == ROW_COLUMNS and table.to_pylist() == rows
    with RowWriter(tmp_path / "empty.parquet", list(types), types=types):
        pass
    assert pq.read_table(tmp_path / "empty.parquet").schema.names == ROW_COLUMNS
    geometry = output.column_types(geometry=True)  # a failure row has no geometry: empty cells
    with RowWriter(tmp_path / "failed.parquet", list(geometry), types=geometry) as writer:
        writer.write(work.failure("gone.png", "no photo or video there").rows)
    [failed] = pq.read_table(tmp_path / "failed.parquet").to_pylist()
    assert failed["yaw"] is None and failed["error"] == "no photo or video there"


def test_a_table_appears_whole_or_leaves_the_earlier_one(tmp_path: Path) -> None:
    """The one staging rule: written under a hidden partial name and renamed when closed (a Ctrl-C
    the command catches inside the block: the rows so far); a failure, or a Ctrl-C that leaves the
    block, leaves an earlier file of that name as it was."""
    path = tmp_path / "t.csv"
    path.write_text("file,face,earlier\n")
    with pytest.raises(RuntimeError), RowWriter(path, ["x"]) as writer:
        writer.write([{"x": 1}])
        assert partial_path(path).is_file() and partial_path(path).name.startswith(".t.")
        assert partial_path(path).name == f".t.{os.getpid()}.partial.csv"
        raise RuntimeError("a crash")
    assert path.read_text() == "file,face,earlier\n" and not partial_path(path).exists()
    with pytest.raises(KeyboardInterrupt), RowWriter(path, ["x"]) as writer:  # batch's: whole or nothing
        writer.write([{"x": 1}, {"x": 2}])
        raise KeyboardInterrupt
    assert path.read_text() == "file,face,earlier\n" and os.listdir(tmp_path) == ["t.csv"]
    with RowWriter(path, ["x"]) as writer:  # video's (predict closes it the same way): the rows so far
        try:
            writer.write([{"x": 1}, {"x": 2}])
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
    assert path.read_text().splitlines() == ["x", "1", "2"] and os.listdir(tmp_path) == ["t.csv"]


def test_a_table_that_fails_to_finish_leaves_no_partial(tmp_path: Path) -> None:
    need("pyarrow")
    import pyarrow as pa

    with pytest.raises(pa.ArrowException), RowWriter(tmp_path / "t.parquet", ["x"], types={"x": "int64"}) as writer:
        writer.write([{"x": "not a number"}])  # Arrow refuses it when the group is written, at close
    assert os.listdir(tmp_path) == []


def test_an_output_that_is_a_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    """A link in the output's place may name an input (annotated/x.jpg -> ../photos/x.jpg): the
    output replaces the link, and the file it named stays as it was; a link to itself or to nothing
    is replaced too, not a traceback."""
    (tmp_path / "input.csv").write_text("mine\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "input.csv")
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nothing.png")
    for name in ("link.csv", "loop.csv"):
        with RowWriter(tmp_path / name, ["x"]) as writer:
            writer.write([{"x": 1}])
        assert not (tmp_path / name).is_symlink() and (tmp_path / name).read_text().splitlines() == ["x", "1"]
    write_whole(tmp_path / "gone.png", "x")
    assert not (tmp_path / "gone.png").is_symlink() and not (tmp_path / "nothing.png").exists()
    assert (tmp_path / "input.csv").read_text() == "mine\n"
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(OutputError, match="folder.json: cannot write"):
        write_whole(tmp_path / "folder.json", "{}")  # one line, as every output error
    assert not [p for p in tmp_path.iterdir() if is_partial(p.name)]


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
