"""``fer-ensemble batch``: Parquet rows equal to predict's and video's, the same on Ray and on the
local pool, video ranges stitched exactly, reruns that skip what is done, failures as rows."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import NO_FACE, REPO, cli_in_process, need, run_cli, skip_or_fail

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.media.inputs import SAMPLES

pq = need("pyarrow.parquet")
need("ray")
CLIP = SAMPLES / "faces.mp4"


def generated_clip(path: Path, frames: int = 45) -> Path:
    """The bundled clip played backwards and mirrored, at another frame rate and size."""
    import cv2

    source = cv2.VideoCapture(str(CLIP))
    clip = []
    while len(clip) < frames and (frame := source.read()[1]) is not None:
        clip.append(cv2.resize(cv2.flip(frame, 1), (480, 360)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (480, 360))
    for frame in reversed(clip):
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """The bundled photos and clip, a generated clip, a corrupt photo and a file that is no video."""
    folder = tmp_path / "collection"
    folder.mkdir()
    for name in ("astronaut.png", "grace_hopper.jpg", "camera.png", "faces.mp4"):
        shutil.copy(SAMPLES / name, folder / name)
    shutil.copy(NO_FACE, folder / "no_face.png")
    generated_clip(folder / "generated.avi")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18not a video")  # binary: a text file is named as one
    return folder


def batch(*args: str, check: bool = True):
    return run_cli("batch", *args, "--no-progress", check=check)


def faces_table(out: Path, source: Path):
    from fer_ensemble.batch.output import source_key

    return pq.read_table(out / "faces" / f"{source_key(str(source))}.parquet")


def rounded(row: dict) -> tuple:
    return (row["x"], row["y"], row["w"], row["h"], row["label"], f"{row['score']:.4f}",
            *(f"{row[e]:.4f}" for e in EMOTIONS))


def test_rows_equal_predict_and_video_and_failures_are_rows(collection: Path, tiny_ensemble: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = batch(str(collection), "--out", str(out), "--engine", "local", "--num-workers", "2",
                   "--ensemble", str(tiny_ensemble), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr  # two inputs failed, the rest done
    summary = {row["source"]: row for row in pq.read_table(out / "summary.parquet").to_pylist()}
    assert len(summary) == 8 and summary[str(collection / "generated.avi")]["frames_read"] == 45
    assert "not a readable image" in summary[str(collection / "broken.jpg")]["error"]
    assert "not a readable video" in summary[str(collection / "broken.mp4")]["error"]
    assert summary[str(collection / "faces.mp4")]["frames_read"] == 60

    photos = [str(collection / n) for n in ("astronaut.png", "grace_hopper.jpg", "camera.png", "no_face.png")]
    run_cli("predict", *photos, "--csv", str(tmp_path / "predict.csv"), "--ensemble", str(tiny_ensemble),
            check=False)
    expected = {}
    for row in csv.DictReader(open(tmp_path / "predict.csv")):
        expected.setdefault(row["file"], []).append(
            (int(row["x"]), int(row["y"]), int(row["w"]), int(row["h"]), row["label"], row["score"],
             *(row[e] for e in EMOTIONS)))
    for photo in photos:
        assert [rounded(r) for r in faces_table(out, Path(photo)).to_pylist()] == expected.get(photo, [])

    run_cli("video", str(collection / "faces.mp4"), "--out", str(tmp_path / "video"), "--no-video",
            "--ensemble", str(tiny_ensemble))
    timeline = [(int(r["frame"]), int(r["track_id"]), int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]),
                 r["label"], r["score"], *(r[e] for e in EMOTIONS))
                for r in csv.DictReader(open(tmp_path / "video" / "timeline.csv"))]
    rows = faces_table(out, collection / "faces.mp4").to_pylist()
    assert [(r["frame"], r["track_id"], *rounded(r)) for r in rows] == timeline


def test_ray_and_the_local_pool_write_the_same_parquet(collection: Path, tiny_ensemble: Path,
                                                      tmp_path: Path) -> None:
    (collection / "broken.mp4").unlink()
    common = ("--ensemble", str(tiny_ensemble), "--num-workers", "2", "--no-track", "--chunk-frames", "17")
    batch(str(collection), "--out", str(tmp_path / "local"), "--engine", "local", *common, check=False)
    ray_run = batch(str(collection), "--out", str(tmp_path / "ray"), "--engine", "ray", *common, check=False)
    assert ray_run.returncode == 1 and "Traceback" not in ray_run.stderr  # broken.jpg
    for noise in ("logging.cc", "53727", "Deprecation"):  # Ray's own lines stay out (issue 22, item 19)
        assert noise not in ray_run.stderr, ray_run.stderr
    local_files = sorted(p.name for p in (tmp_path / "local" / "faces").iterdir())
    assert local_files == sorted(p.name for p in (tmp_path / "ray" / "faces").iterdir()) and len(local_files) == 7
    for name in local_files:
        assert pq.read_table(tmp_path / "local" / "faces" / name).equals(pq.read_table(tmp_path / "ray" / "faces" / name))
    # the clip in four ranges of 17 frames gives what one range gives
    whole = tmp_path / "whole"
    batch(str(collection / "faces.mp4"), "--out", str(whole), "--engine", "local", "--no-track",
          "--ensemble", str(tiny_ensemble))
    assert faces_table(whole, collection / "faces.mp4").equals(faces_table(tmp_path / "local", collection / "faces.mp4"))
    assert faces_table(whole, collection / "faces.mp4").column("track_id").null_count == \
        faces_table(whole, collection / "faces.mp4").num_rows


def test_reruns_skip_what_is_done_and_manifests_and_uris_name_sources(tiny_ensemble: Path, tmp_path: Path) -> None:
    photo = tmp_path / "astronaut.png"
    shutil.copy(SAMPLES / "astronaut.png", photo)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,note\n{photo},a photo\n{CLIP},a clip\n")
    out = tmp_path / "out"
    tiny = ("--ensemble", str(tiny_ensemble), "--engine", "local")
    batch(str(manifest), "--out", str(out), *tiny)
    written = {p: p.stat().st_mtime_ns for p in (out / "faces").iterdir()}
    assert len(written) == 2
    again = batch(str(manifest), "--out", str(out), *tiny)
    assert "2 source(s) already done" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "faces").iterdir()} == written
    batch(str(manifest), "--out", str(out), "--overwrite", *tiny)
    assert all(p.stat().st_mtime_ns != t for p, t in written.items())

    import pyarrow as pa

    pq.write_table(pa.table({"path": [f"file://{photo}"]}), tmp_path / "manifest.parquet")
    uri_out = tmp_path / "uri"
    batch(str(tmp_path / "manifest.parquet"), "--out", str(uri_out), *tiny)
    (row,) = pq.read_table(uri_out / "summary.parquet").to_pylist()
    assert row["source"] == f"file://{photo}" and row["faces"] == 1


def test_inputs_that_hold_nothing_fail_and_are_counted(tiny_ensemble: Path, tmp_path: Path) -> None:
    """As predict counts them: a missing input is a failure in the closing line, and a row of the
    summary (robustness issue, item 8), as is an empty folder; with nothing at all to read, no
    output folder is made."""
    missing = str(tmp_path / "nosuch")
    alone = batch(missing, "--out", str(tmp_path / "none"), "--engine", "local", "--ensemble", str(tiny_ensemble),
                  check=False)
    assert alone.returncode == 1 and not (tmp_path / "none").exists()
    assert alone.stderr.strip().splitlines()[-1] == f"no photo or video among the inputs: 1 failed, nothing written to {tmp_path / 'none'}"
    (tmp_path / "empty").mkdir()
    mixed = batch(missing, str(SAMPLES / "grace_hopper.jpg"), str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                  "--engine", "local", "--ensemble", str(tiny_ensemble), check=False)
    assert mixed.returncode == 1 and ", 2 failed; " in mixed.stderr.strip().splitlines()[-1]
    rows = {row["source"]: row for row in pq.read_table(tmp_path / "o" / "summary.parquet").to_pylist()}
    assert sorted(rows) == sorted([missing, str(SAMPLES / "grace_hopper.jpg"), str(tmp_path / "empty")])
    assert rows[missing]["error"] == rows[str(tmp_path / "empty")]["error"] == "no photo or video there"
    assert rows[str(SAMPLES / "grace_hopper.jpg")]["error"] is None and rows[missing]["kind"] is None
    (error_row,) = faces_table(tmp_path / "o", Path(missing)).to_pylist()
    assert error_row["error"] == "no photo or video there" and error_row["frame"] is None


def test_batch_without_ray_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None; from fer_ensemble.cli import main; "
            f"raise SystemExit(main(['batch', {str(SAMPLES)!r}, '--out', {str(tmp_path)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "pip install 'fer-ensemble[batch]'" in result.stderr


@pytest.mark.parametrize("uri, package", [("s3://bucket/clips/", "s3fs"), ("gs://bucket/list.csv", "gcsfs")])
def test_an_object_store_without_its_file_system_is_one_line(uri: str, package: str, tmp_path: Path) -> None:
    """s3fs / gcsfs come with the cloud extra (not installed by the test command): a missing one is
    named with the install line, before any output folder is made, instead of fsspec's traceback."""
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        skip_or_fail(f"{package} is installed here: this test needs the cloud extra absent")
    result = cli_in_process("batch", uri, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"pip install 'fer-ensemble[cloud]' ({package})" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_ray_client_address_without_ray_client_is_one_line(tmp_path: Path) -> None:
    """--ray-address ray://... needs ray[client] (the cloud extra): named before anything starts."""
    import importlib.util

    if importlib.util.find_spec("grpc") is not None:
        skip_or_fail("ray[client] is installed here: this test needs the cloud extra absent")
    result = cli_in_process("batch", str(SAMPLES / "astronaut.png"), "--out", str(tmp_path / "out"), "--engine", "ray",
                            "--ray-address", "ray://127.0.0.1:10001")
    assert result.returncode == 2 and "pip install 'fer-ensemble[cloud]' (ray[client])" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_two_tracked_videos_on_one_worker_both_number_their_tracks_from_1(engine: str, tiny_ensemble: Path,
                                                                         tmp_path: Path) -> None:
    """Issue 24, item 1: the worker's tracker restarts its ids for each video, so the rows do not
    depend on which worker took which video, or in what order."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(CLIP, folder / "first.mp4")
    generated_clip(folder / "second.avi")
    out = tmp_path / engine
    batch(str(folder), "--out", str(out), "--engine", engine, "--num-workers", "1", "--ensemble",
          str(tiny_ensemble))
    for video in ("first.mp4", "second.avi"):
        ids = [i for i in faces_table(out, folder / video).column("track_id").to_pylist() if i is not None]
        assert ids and min(ids) == 1, (video, sorted(set(ids)))


def test_the_worker_library_changes_no_process_setting(tiny_ensemble: Path) -> None:
    """Issue 24, item 5: OpenCV's thread count is set where a worker process starts (the engines),
    not by building a Worker, which a caller may do in its own process."""
    import cv2

    from fer_ensemble.batch.work import BatchSettings, Worker

    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        Worker(BatchSettings(ensemble=str(tiny_ensemble), threads=1))
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_batch_videos_take_the_automatic_resting_face_as_video_does(tmp_path: Path) -> None:
    """--auto-resting-face: the worker's video recognizer reads each track against its calm frames
    (the shipped ensemble on the 15 fps sample clip: Hopper's rows change from her third frame, when
    her calm frames cover CALM_S, 1/6 s; the smiling astronaut's never); with --no-track it is
    refused in one line."""
    from fer_ensemble.batch.plan import Task
    from fer_ensemble.batch.work import BatchSettings, Worker

    task = Task(str(SAMPLES / "faces.mp4"), "video").to_dict()
    plain = Worker(BatchSettings(threads=1)).run(task).rows
    auto = Worker(BatchSettings(threads=1, auto_resting_face=True)).run(task).rows
    assert [(r["frame"], r["track_id"], r["label"]) for r in plain] == [
        (r["frame"], r["track_id"], r["label"]) for r in auto]
    changed = {r["track_id"] for r, s in zip(plain, auto) if r["neutral"] != s["neutral"]}
    per_track: dict[int, list] = {}
    for r in plain:
        per_track.setdefault(r["track_id"], []).append(r["label"])
    assert changed and all(per_track[t][0] == "neutral" for t in changed)  # Hopper's tracks only
    assert all(labels[0] == "happiness" for t, labels in per_track.items() if t not in changed)
    first = {t: next(i for i, (r, s) in enumerate(x for x in zip(plain, auto) if x[0]["track_id"] == t)
                     if r["neutral"] != s["neutral"]) for t in changed}
    assert set(first.values()) == {2}  # from the third frame of each such track: 3 / 15 s >= 1/6 s
    relative = [(r["track_id"], i) for i, r in enumerate(auto) if r["relative"]]  # the rows say which
    assert {t for t, _ in relative} == changed and not any(r["relative"] for r in plain)
    assert all(auto[i]["neutral"] != plain[i]["neutral"] for _, i in relative)
    refused = cli_in_process("batch", str(SAMPLES / "faces.mp4"), "--out", str(tmp_path / "o"), "--engine", "local",
                             "--no-track", "--auto-resting-face", "--no-progress")
    assert refused.returncode == 2 and refused.stderr.strip().endswith("--auto-resting-face needs tracks: leave "
                                                                        "out --no-track")
    assert not (tmp_path / "o").exists()  # refused before any folder is made


def test_batch_takes_a_calibration_as_every_app_does(tmp_path: Path) -> None:
    """--calibration posed: a worker's rows answer as EmotionRecognizer(calibration="posed"); a
    calibration that does not exist is one line and exit 2, before any folder is made."""
    import cv2

    from fer_ensemble.batch.plan import Task
    from fer_ensemble.batch.work import BatchSettings, Worker
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    photo = SAMPLES / "grace_hopper.jpg"
    (expected,) = EmotionRecognizer(calibration="posed").predict(cv2.imread(str(photo)))
    (row,) = Worker(BatchSettings(threads=1, calibration="posed")).run(Task(str(photo), "image").to_dict()).rows
    assert [row[e] for e in EMOTIONS] == pytest.approx([expected.probabilities[e] for e in EMOTIONS], abs=1e-6)
    assert row["neutral"] != pytest.approx(EmotionRecognizer().predict(cv2.imread(str(photo)))[0].probabilities["neutral"])
    refused = cli_in_process("batch", str(photo), "--out", str(tmp_path / "o"), "--engine", "local", "--calibration",
                             "nosuch", "--no-progress")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "fer-ensemble batch: no calibration 'nosuch': give none, posed or a file that adapt wrote"], refused.stderr
    assert not (tmp_path / "o").exists()


def test_a_worker_that_dies_is_its_sources_error_row(monkeypatch: pytest.MonkeyPatch, tiny_ensemble: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Robustness issue, item 7: a native crash in one worker (a codec's segfault) breaks the local pool; that
    source becomes an error row, the others are read all the same, and no traceback escapes."""
    from batch_crash import crashing_task

    from fer_ensemble.batch import engines
    from fer_ensemble.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("astronaut.png", "grace_hopper.jpg", "camera.png"):
        shutil.copy(SAMPLES / name, folder / name)
    shutil.copy(SAMPLES / "astronaut.png", folder / "crash.png")
    monkeypatch.setattr(engines, "_run_task", crashing_task)
    out = tmp_path / "out"
    code = main(["batch", str(folder), "--out", str(out), "--engine", "local", "--num-workers", "2",
                 "--ensemble", str(tiny_ensemble), "--no-progress"])
    assert code == 1 and "Traceback" not in capsys.readouterr().err
    summary = {Path(row["source"]).name: row for row in pq.read_table(out / "summary.parquet").to_pylist()}
    assert sorted(summary) == ["astronaut.png", "camera.png", "crash.png", "grace_hopper.jpg"]
    assert summary["crash.png"]["error"] == engines.WORKER_DIED
    assert [name for name, row in summary.items() if row["error"]] == ["crash.png"]
    assert summary["astronaut.png"]["faces"] == 1


def test_every_setting_the_rows_depend_on_is_named_when_it_changes(tiny_ensemble: Path, tmp_path: Path) -> None:
    """Robustness issue, item 12, every setting (the command test above changes two): a source done
    under one prior, ensemble, detector, version or profile is not done under another, and the
    setting is named; threads, which the rows do not depend on, change nothing."""
    from dataclasses import replace

    from fer_ensemble.batch.output import BatchOutput
    from fer_ensemble.batch.work import BatchSettings, for_kind, recorded_settings

    other = tiny_ensemble.with_name("other.json")  # the same members, other weights
    other.write_text(tiny_ensemble.read_text().replace('"weight": 0.25', '"weight": 0.3'))
    profile = tmp_path / "me.json"
    profile.write_text("{}")
    base = BatchSettings(ensemble=str(tiny_ensemble))
    output = BatchOutput(tmp_path / "out")
    for kind, source in (("image", "a.png"), ("video", "a.mp4")):
        settings = for_kind(recorded_settings(base, "1.0"), kind)
        output.write_source(source, kind, [], 1, 1, None, [], settings)
        assert output.done(source, settings)
        changes = {"prior": (replace(base, prior_strength=0.5), "1.0"),
                   "ensemble": (replace(base, ensemble=str(other)), "1.0"),
                   f"{'video' if kind == 'video' else 'photo'}_detector": (
                       replace(base, **{f"{'video' if kind == 'video' else 'photo'}_detector": {"detector": "haar"}}), "1.0"),
                   "version": (base, "1.1"), "profile": (replace(base, profile=str(profile)), "1.0")}
        for name, (changed, version) in changes.items():
            now = for_kind(recorded_settings(changed, version), kind)
            assert not output.done(source, now) and output.changed(source, now) == [name], name
        assert output.done(source, for_kind(recorded_settings(replace(base, threads=4), "1.0"), kind))


def test_a_rerun_under_other_settings_reads_those_sources_again(tiny_ensemble: Path, tmp_path: Path) -> None:
    """Robustness issue, item 12: each source's summary records the settings its rows depend on; a
    rerun redoes the sources made under others, with a note naming the setting, and keeps those the
    change does not concern (a photo under another --stride)."""
    import json

    from fer_ensemble.batch.output import BatchOutput

    photo = tmp_path / "astronaut.png"
    shutil.copy(SAMPLES / "astronaut.png", photo)
    out = tmp_path / "out"
    tiny = (str(photo), str(CLIP), "--out", str(out), "--ensemble", str(tiny_ensemble), "--engine", "local")

    def times() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in (out / "faces").iterdir()}

    batch(*tiny)
    first = times()
    recorded = BatchOutput(out).summary(str(photo))["settings"]
    assert recorded["prior"] is None and recorded["ensemble"].startswith("sha256:") and "stride" not in recorded
    calibrated = batch(*tiny, "--calibration", "posed")
    assert "2 source(s) in " + str(out) + " were made under other settings (--calibration): reading them again" in calibrated.stderr
    second = times()
    assert all(second[name] != first[name] for name in first)
    assert BatchOutput(out).summary(str(CLIP))["settings"]["calibration"].startswith("sha256:")
    summary = {row["source"]: row for row in pq.read_table(out / "summary.parquet").to_pylist()}
    assert json.loads(summary[str(CLIP)]["settings"])["calibration"].startswith("sha256:")

    stride = batch(*tiny, "--calibration", "posed", "--stride", "2")
    assert "1 source(s) already done" in stride.stderr and "under other settings (--stride)" in stride.stderr
    third = times()
    changed = {name for name in third if third[name] != second[name]}
    assert changed == {p.name for p in BatchOutput(out).faces_path(str(CLIP)).parent.iterdir()
                       if p.name.startswith("faces.mp4")}
    assert "other settings" not in batch(*tiny, "--calibration", "posed", "--stride", "2").stderr


def test_a_ray_actor_that_dies_is_its_sources_error_row(monkeypatch: pytest.MonkeyPatch, tiny_ensemble: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Robustness issue, item 7, on Ray: an actor killed by a native crash ends Ray Data's run; the
    unfinished sources are read again one at a time on a fresh actor, so the one that kills it again
    is that source's error row (WORKER_DIED) and the others are read all the same, with no
    traceback; and workers that cannot be built are the one usage line, as locally."""
    need("ray")
    import batch_crash
    import ray

    from fer_ensemble.batch import engines
    from fer_ensemble.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("astronaut.png", "grace_hopper.jpg"):
        shutil.copy(SAMPLES / name, folder / name)
    shutil.copy(SAMPLES / "astronaut.png", folder / "crash.png")
    ray.cloudpickle.register_pickle_by_value(batch_crash)  # the actors cannot import tests/
    monkeypatch.setattr(engines, "RayWorker", type("RayWorker", (batch_crash.CrashingRayWorker, engines.RayWorker), {}))
    out = tmp_path / "out"
    try:
        code = main(["batch", str(folder), "--out", str(out), "--engine", "ray", "--num-workers", "1",
                     "--ensemble", str(tiny_ensemble), "--no-progress"])
        assert code == 1 and "Traceback" not in capsys.readouterr().err
        summary = {Path(row["source"]).name: row for row in pq.read_table(out / "summary.parquet").to_pylist()}
        assert sorted(summary) == ["astronaut.png", "crash.png", "grace_hopper.jpg"]
        assert summary["crash.png"]["error"] == engines.WORKER_DIED
        assert [name for name, row in summary.items() if row["error"]] == ["crash.png"]
        assert summary["astronaut.png"]["faces"] == 1
        code = main(["batch", str(folder), "--out", str(tmp_path / "o2"), "--engine", "ray", "--num-workers", "1",
                     "--ensemble", str(tiny_ensemble), "--prior", "0.5", "--no-progress"])
        assert code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == (
            "fer-ensemble batch: this ensemble's cards record no class prior to adjust")
    finally:
        ray.shutdown()


def test_a_worker_that_cannot_be_built_is_one_line(tiny_ensemble: Path, tmp_path: Path) -> None:
    """--prior for an ensemble whose cards record no class prior: the workers cannot be built, which
    is the one usage line every app gives (exit 2), not a broken pool nor a failure per source."""
    result = batch(str(SAMPLES / "astronaut.png"), str(SAMPLES / "camera.png"), "--out", str(tmp_path / "o"),
                   "--engine", "local", "--ensemble", str(tiny_ensemble), "--prior", "0.5", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "fer-ensemble batch: this ensemble's cards record no class prior to adjust"), result.stderr


def vanishing_clip(path: Path, shown: int = 10, blank: int = 6) -> Path:
    """A 30 fps clip of the sample photo for ``shown`` frames, then ``blank`` grey frames: the
    face vanishes at a cut, and the stream holds it for a few frames."""
    import cv2

    photo = cv2.resize(cv2.imread(str(SAMPLES / "grace_hopper.jpg")), (320, 384))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 384))
    for frame in [photo] * shown + [np.full_like(photo, 128)] * blank:
        writer.write(frame)
    writer.release()
    return path


def test_held_faces_are_marked_and_left_out_of_the_summaries(tiny_ensemble: Path, tmp_path: Path) -> None:
    """A face held through missed detections (after a cut to a blank frame) is a row with ``held``
    1 / true in video's timeline.csv and batch's Parquet, and counts in neither summary: faces,
    frames with faces, a track's frames and its last-seen time are the detected frames'."""
    clip = vanishing_clip(tmp_path / "cut.mp4")
    run_cli("video", str(clip), "--out", str(tmp_path / "video"), "--no-video", "--no-progress",
            "--ensemble", str(tiny_ensemble))
    with open(tmp_path / "video" / "timeline.csv") as f:
        timeline = list(csv.DictReader(f))
    held = [int(r["frame"]) for r in timeline if r["held"] == "1"]
    seen = [int(r["frame"]) for r in timeline if r["held"] == "0"]
    assert seen == list(range(10)) and held and min(held) == 10, (seen, held)
    summary = json.loads((tmp_path / "video" / "summary.json").read_text())
    assert summary["tracks"]["1"]["frames"] == 10 and summary["tracks"]["1"]["last_seen_s"] < 10 / 30
    batch(str(clip), "--out", str(tmp_path / "batch"), "--engine", "local", "--ensemble", str(tiny_ensemble))
    rows = faces_table(tmp_path / "batch", clip).to_pylist()
    assert [r["frame"] for r in rows if r["held"]] == held and [r["frame"] for r in rows if not r["held"]] == seen
    totals = pq.read_table(tmp_path / "batch" / "summary.parquet").to_pylist()[0]
    assert totals["faces"] == 10 and totals["frames_with_faces"] == 10


def test_batch_reads_every_face_through_a_profile_and_records_it(tmp_path: Path) -> None:
    """--profile: each face's row is what predict(photo, profile=...) answers; the summary records
    the profile file's digest, and a run without it reads the photo again, naming --profile; a
    damaged profile is one line before any worker starts."""
    import cv2

    from fer_ensemble.batch.output import BatchOutput
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer()
    photo = tmp_path / "grace_hopper.jpg"
    shutil.copy(SAMPLES / "grace_hopper.jpg", photo)
    image = cv2.imread(str(photo))
    shifted = [np.roll(image, (3 * i, 3 * i), axis=(0, 1)) for i in range(4)]
    profile = recognizer.enrol(shifted, ["neutral", "sadness", "anger", "fear"])
    profile.save(tmp_path / "me.json")
    out = tmp_path / "out"
    run = (str(photo), "--out", str(out), "--engine", "local")
    batch(*run, "--profile", str(tmp_path / "me.json"))
    [row] = pq.read_table(BatchOutput(out).faces_path(str(photo))).to_pylist()
    expected = recognizer.predict(image, profile=profile)[0]
    assert row["label"] == expected.label
    assert [row[e] for e in EMOTIONS] == pytest.approx([expected.probabilities[e] for e in EMOTIONS], abs=1e-5)
    assert BatchOutput(out).summary(str(photo))["settings"]["profile"].startswith("sha256:")
    plain = batch(*run)
    assert "were made under other settings (--profile): reading them again" in plain.stderr
    assert "profile" not in BatchOutput(out).summary(str(photo))["settings"]
    (tmp_path / "bad.json").write_text("{}")
    refused = cli_in_process("batch", *run, "--profile", str(tmp_path / "bad.json"), "--no-progress")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"fer-ensemble batch: {tmp_path / 'bad.json'}: not a profile file of format 'fer-ensemble/profile/v1' "
        "(found None)"]
