"""Detection, tracking, smoothing, the ensemble, every CLI app end to end and every bad input."""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import NO_FACE, REPO, cli_in_process, run_cli, turned_portrait
from support.group_photos import (
    BLAZEFACE_LEAST,
    FACES,
    HAAR_LEAST,
    assert_group_photo_bar,
    group_photo_counts,
)

from fer_ensemble.apps.common import add_recognizer_arguments, detector_options_of
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.media.video import VideoFrames
from fer_ensemble.preprocess import prepare_batch
from fer_ensemble.runtime.blazeface import TURNED_SCORE_THRESHOLD
from fer_ensemble.runtime.classifier import softmax
from fer_ensemble.runtime.detection import HaarFaceDetector, HaarOptions, haar_cascade_path
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.recognizer import EmotionRecognizer
from fer_ensemble.runtime.tracking import IoUTracker, iou, smooth

CLIP = SAMPLES / "faces.mp4"


def test_opencv_below_5_and_the_cascade_loads() -> None:
    assert int(cv2.__version__.split(".")[0]) < 5
    assert Path(haar_cascade_path()).is_file()
    assert not cv2.CascadeClassifier(haar_cascade_path()).empty()


def test_the_api_and_the_cli_share_the_detector_presets() -> None:
    """With no detector option given, a command's detector is its preset as the API has it; the
    options given replace only theirs (unset flags are pruned, not filled with copies of the presets)."""
    def cli_detector(still: bool, *options: str):
        parser = argparse.ArgumentParser()
        add_recognizer_arguments(parser, still=still)
        return detector_options_of(parser.parse_args(["--detector", "haar", *options]))

    assert cli_detector(True) == HaarFaceDetector().options == HaarOptions.stills()  # predict, EmotionRecognizer()
    assert cli_detector(False) == HaarOptions.live()  # webcam, video
    assert HaarOptions.stills() != HaarOptions.live()
    assert cli_detector(False, "--min-face", "60") == HaarOptions.live(min_face=60)
    assert cli_detector(True, "--equalize", "clahe") == HaarOptions.stills(equalize="clahe")


def test_haar_finds_the_faces_in_the_shared_photos(faces_dir: Path) -> None:
    detector = HaarFaceDetector()  # the stills preset, what `predict` uses
    rows = list(csv.DictReader(open(faces_dir / "SOURCES.csv")))
    group_found, group_total = 0, 0
    for row in rows:
        expected = int(row["faces"].split()[0])
        found = len(detector.detect(cv2.imread(str(faces_dir / row["file"]))))
        if expected <= 1:
            assert found == expected, row["file"]
        else:
            assert found >= math.ceil(expected / 2), f"{row['file']}: {found} of {expected}"
            group_found, group_total = group_found + min(found, expected), group_total + expected
    assert group_found >= 0.6 * group_total


def count_scans(detector: HaarFaceDetector, image: np.ndarray) -> tuple[list, int]:
    scans = []
    original = detector._scan
    detector._scan = lambda *args, **kwargs: scans.append(args[1]) or original(*args, **kwargs)
    return detector.detect(image), len(scans)


def test_the_stills_ladder_stops_as_soon_as_the_faces_allow(faces_dir: Path) -> None:
    boxes, scans = count_scans(HaarFaceDetector(), cv2.imread(str(SAMPLES / "grace_hopper.jpg")))
    # a portrait: the first, small scan finds the face; one more, fine enough for faces of 0.4 of
    # its size (the first saw faces of 50 px in its copy only), and the ladder stops
    assert len(boxes) == 1 and scans == 2
    _, scans = count_scans(HaarFaceDetector(), cv2.imread(str(faces_dir / "nasa_s131e010010_group_portrait.jpg")))
    assert scans >= 3  # small faces: finer copies, as fine as they need


@pytest.mark.parametrize("detector, least", [("blazeface", BLAZEFACE_LEAST), ("haar", HAAR_LEAST)])
def test_the_stills_presets_against_the_hand_labelled_group_photos(faces_dir: Path, detector: str, least: int) -> None:
    """Each detector's stills preset meets its group-photo bar (support.group_photos): the default
    detector's, and Haar's, an option."""
    from fer_ensemble.runtime.detectors import create_detector

    assert_group_photo_bar(group_photo_counts(create_detector({"detector": detector}), faces_dir), least)


def scene_with_a_small_face(fraction: float) -> np.ndarray:
    portrait = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))  # a ~240 px face
    scene = cv2.copyMakeBorder(portrait, 60, 300, 40, 700, cv2.BORDER_REPLICATE)
    small = cv2.resize(portrait, None, fx=fraction, fy=fraction, interpolation=cv2.INTER_AREA)
    scene[700 : 700 + small.shape[0], 800 : 800 + small.shape[1]] = small
    return scene


def test_tiny_faces_beside_a_large_one_need_relative_min_face_0() -> None:
    scene = scene_with_a_small_face(0.3)  # a ~75 px face
    assert len(HaarFaceDetector().detect(scene)) == 1  # below 0.4 of the large face: not looked for
    assert len(HaarFaceDetector(relative_min_face=0).detect(scene)) == 2
    scene = scene_with_a_small_face(0.12)  # a ~29 px face: the README's recipe for tiny faces
    assert len(HaarFaceDetector(relative_min_face=0).detect(scene)) == 1
    assert len(HaarFaceDetector(relative_min_face=0, min_face=20, scale_factor=1.1).detect(scene)) == 2


@pytest.mark.parametrize("angle", [20, 25, 30, 35])
def test_turned_scans_find_a_tilted_head(angle: float) -> None:
    """--rotations -25 25 finds heads tilted by 20-35 degrees, which the upright scans miss."""
    tilted = turned_portrait(angle)
    height, width = tilted.shape[:2]
    assert HaarFaceDetector().detect(tilted) == []
    (box,) = HaarFaceDetector(rotations=(-25.0, 25.0)).detect(tilted)
    assert abs(box[0] + box[2] / 2 - width / 2) < 60 and abs(box[1] + box[3] / 2 - height / 2) < 150


def test_benchmark_stills_table(tiny_ensemble: Path, faces_dir: Path) -> None:
    """The installed command: the shipped presets on the portraits, the photos without a face and the
    group photos it is given (both options or neither; a missing one is one line, exit 2)."""
    result = run_cli("benchmark", "--stills", "--repeat", "1", "--threads", "1", "--json", "--ensemble", str(tiny_ensemble),
                     "--group-photos", str(faces_dir), "--group-labels", str(REPO / "benchmarks" / "group-photo-faces.csv"),
                     "--score-thresholds", "0.7", "0.9")
    rows = json.loads(result.stdout)["speed"]
    assert {row["preset"] for row in rows} == {"Haar (--detector haar)", "Haar + scans turned -25/+25 degrees",
                                               "BlazeFace (default)", "BlazeFace (default), --score-threshold 0.9",
                                               "BlazeFace, --turned-scans off", "BlazeFace, --turned-scans always"}
    group = {row["preset"]: row["faces"] for row in rows if row["photos"].startswith("5 group photos")}
    assert_group_photo_bar(group["BlazeFace, --turned-scans always"], FACES)
    assert group["BlazeFace (default)"] == group["BlazeFace, --turned-scans off"]  # every photo has an upright face
    assert len(group) == 6 and all(set(row["ms_per_photo"]) == {"1"} for row in rows)  # --threads 1: one column
    assert all(faces["true_positives"] >= HAAR_LEAST for preset, faces in group.items() if "0.9" not in preset)
    assert_group_photo_bar(group["BlazeFace (default)"], BLAZEFACE_LEAST)
    assert_group_photo_bar(group["Haar (--detector haar)"], HAAR_LEAST)
    strict = group["BlazeFace (default), --score-threshold 0.9"]
    assert strict["true_positives"] + strict["false_positives"] < BLAZEFACE_LEAST  # a higher threshold keeps fewer
    alone = run_cli("benchmark", "--stills", "--group-photos", str(faces_dir), check=False)
    assert alone.returncode == 2 and alone.stderr.splitlines() == [
        "fer-ensemble benchmark: --group-photos DIR and --group-labels CSV go together (the photos and their face boxes)"]


def test_the_stills_study_checks_each_preset_where_users_report_failures(tiny_ensemble: Path, faces_dir: Path,
                                                                        user_cases: Path) -> None:
    """The checkout's research run (tools/stills_study.py): what each detector finds in the user-case
    photos and the sample clip, and the scores the turned-scan threshold was chosen from."""
    from tools.stills_study import detector_checks, parse_args, turned_scores

    args = parse_args(["--ensemble", str(tiny_ensemble), "--group-photos", str(faces_dir),
                       "--group-labels", str(REPO / "benchmarks" / "group-photo-faces.csv"),
                       "--user-cases", str(user_cases), "--taiwan", str(faces_dir / "absent")])  # taiwan: test_blazeface's
    checks = detector_checks(args)
    passed = {c.preset: c.user_cases_passed for c in checks}
    assert all(c.user_cases for c in checks)
    assert passed["BlazeFace (default)"] == 7 and passed["Haar (--detector haar)"] == 6, passed
    assert passed["BlazeFace, --turned-scans always"] == passed["BlazeFace, --turned-scans off"] == 7, passed
    found = {c.preset: len(c.user_cases["c14_tilt_180.png"]) for c in checks if "BlazeFace" in c.preset}
    assert found == {"BlazeFace, --turned-scans off": 0, "BlazeFace (default)": 1,
                     "BlazeFace, --turned-scans always": 1}, found
    turned = turned_scores(args)  # what TURNED_SCORE_THRESHOLD was chosen from
    assert "user-case" in turned and set(turned) <= {"false box", "face", "user-case"}, turned
    assert max(turned.get("false box", [0.0])) < TURNED_SCORE_THRESHOLD < min(
        turned.get("face", []) + turned["user-case"]), turned
    assert passed["Haar ladder before (global equalisation, 30 px window, 1280 px cap)"] == 0, passed
    clip = {c.preset: c.clip_frames_with_face for c in checks}
    assert clip["BlazeFace (default)"] == 60 and clip["Haar (--detector haar)"] == 59 and checks[0].taiwan_no_face is None


def test_the_stills_table_has_a_column_per_thread_count() -> None:
    """Without --threads, 1 and 2 threads, the header speed.md shows; with --threads 2, one column."""
    from fer_ensemble.apps.stills_benchmark import HAAR_PRESET, StillsRow, format_rows

    def rows(ms: dict) -> list:
        faces = {"true_positives": 3, "misses": 1, "false_positives": 0}
        return [StillsRow(HAAR_PRESET, "group", {k: 2 * v for k, v in ms.items()}, faces),
                StillsRow("BlazeFace (default)", "group", ms, faces)]

    both = format_rows(rows({1: 50.0, 2: 40.0})).splitlines()
    assert both[0] == ("| photos | preset | ms per photo, 1 thread | 2 threads | speed-up vs --detector haar, 1 thread "
                       "| faces found / missed / false positives |")
    assert both[1] == "|---|---|---|---|---|---|"
    assert both[3] == "| group | BlazeFace (default) | 50.0 (20.0 photos/s) | 40.0 | 2.00x | 3 / 1 / 0 |"
    two = format_rows(rows({2: 40.0})).splitlines()
    assert two[0].startswith("| photos | preset | ms per photo, 2 threads | speed-up vs --detector haar, 2 threads |")
    assert two[1] == "|---|---|---|---|---|" and two[3].endswith("| 40.0 (25.0 photos/s) | 2.00x | 3 / 1 / 0 |")


def test_tracker_keeps_ids_on_a_moving_face() -> None:
    tracker = IoUTracker(max_missed=2)
    ids = [tracker.update([(100 + 6 * i, 80, 90, 90)])[0].track_id for i in range(10)]
    assert ids == [ids[0]] * 10
    pair = tracker.update([(160, 80, 90, 90), (400, 300, 80, 80)])
    assert pair[0].track_id == ids[0] and pair[1].track_id != ids[0]
    for _ in range(3):  # the first face leaves for longer than max_missed
        tracker.update([(400, 300, 80, 80)])
    back = tracker.update([(160, 80, 90, 90), (400, 300, 80, 80)])
    assert back[1].track_id == pair[1].track_id and back[0].track_id not in (ids[0], pair[1].track_id)
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_track_ids_are_stable_on_the_sample_clip(tiny_ensemble: Path) -> None:
    recognizer = EmotionRecognizer(tiny_ensemble)
    capture = cv2.VideoCapture(str(CLIP))
    frames = [capture.read()[1] for _ in range(20)]  # the astronaut drifting across the frame
    stream = recognizer.stream()
    ids = {face.track_id for frame in frames for face in stream.update(frame)}
    assert len(ids) == 1


def test_smoothing_arithmetic(tiny_ensemble: Path) -> None:
    previous, current = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(smooth(previous, current, 0.25), [0.75, 0.25])
    np.testing.assert_allclose(smooth(None, current, 0.25), current)
    np.testing.assert_allclose(smooth(previous, current, 1.0), current)

    recognizer = EmotionRecognizer(tiny_ensemble, ema_weight=0.3)  # the newest frame's weight at 30 fps
    stream = recognizer.stream()
    frame = cv2.imread(str(SAMPLES / "astronaut.png"))
    box = recognizer.detect(frame)
    rng = np.random.default_rng(0)
    expected = None
    for _ in range(4):  # the same box, changing pixels: an exponential average of the raw outputs
        noisy = np.clip(frame + rng.integers(-60, 60, frame.shape), 0, 255).astype(np.uint8)
        raw = recognizer.classify(noisy, box)[0]
        expected = raw if expected is None else 0.3 * raw + 0.7 * expected
        face = stream.update(noisy, boxes=box)[0]  # no timestamps: 1/30 s apart
        np.testing.assert_allclose(list(face.probabilities.values()), expected, rtol=1e-5)
    assert recognizer.predict(frame)[0].track_id is None  # stills: no tracking, no smoothing


def test_ensemble_is_calibrated_soft_voting(tiny_ensemble: Path) -> None:
    ensemble = Ensemble.load(tiny_ensemble)
    faces = [cv2.imread(str(SAMPLES / "grace_hopper.jpg"), cv2.IMREAD_GRAYSCALE)[100:340, 150:390]]
    small, large = (m.classifier for m in ensemble.members)
    expected = 0.25 * softmax(small.logits(prepare_batch(faces, small.preprocessing)), 1.5) + \
        0.75 * softmax(large.logits(prepare_batch(faces, large.preprocessing)), 0.8)
    np.testing.assert_allclose(ensemble.predict_proba(faces), expected, rtol=1e-5)
    assert ensemble.predict_proba([]).shape == (0, 8)


def test_flip_tta_averages_the_face_and_its_mirror_image(tmp_path: Path) -> None:
    """With a member that mirroring changes, flip_tta is the mean of the face's probabilities and
    its left-right mirror's (not its upside-down image, nor the face twice)."""
    from support import tiny_member

    tiny_member(tmp_path, "ramp", input_size=16, seed=2, mirror_sensitive=True)
    for flip in (False, True):
        (tmp_path / f"flip-{flip}.json").write_text(json.dumps(
            {"members": [{"card": "ramp.json", "temperature": 0.5, "flip_tta": flip}], "flip_tta": flip}))
    plain, flipped = (Ensemble.load(tmp_path / f"flip-{flip}.json") for flip in (False, True))
    face = cv2.imread(str(SAMPLES / "grace_hopper.jpg"), cv2.IMREAD_GRAYSCALE)[100:340, 150:390]
    as_is, mirrored = plain.predict_proba([face], prior_strength=0.0), plain.predict_proba([face[:, ::-1]], prior_strength=0.0)
    assert np.abs(as_is - mirrored).max() > 0.01  # the member does see the difference
    np.testing.assert_allclose(flipped.predict_proba([face], prior_strength=0.0), (as_is + mirrored) / 2, rtol=1e-5)


def test_predict_json_csv_and_annotated_copies(tiny_ensemble: Path, tmp_path: Path) -> None:
    images = [str(SAMPLES / "astronaut.png"), str(SAMPLES / "grace_hopper.jpg")]
    result = run_cli("predict", *images, "--ensemble", str(tiny_ensemble), "--json", "--out",
                     str(tmp_path / "out"), "--csv", str(tmp_path / "faces.csv"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == images
    for record in records:
        (face,) = record["faces"]
        assert len(face["box"]) == 4 and face["label"] in face["probabilities"]
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert face["score"] == max(face["probabilities"].values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut.png", "fer-ensemble.json", "grace_hopper.jpg"]
    rows = list(csv.DictReader(open(tmp_path / "faces.csv")))
    assert len(rows) == 2 and {"file", "x", "label", "contempt"} <= set(rows[0])
    text = run_cli("predict", str(SAMPLES), "--ensemble", str(tiny_ensemble), check=False)
    assert "astronaut.png: 1 face" in text.stdout and "camera.png: 1 face" in text.stdout  # the cameraman


def test_predict_bad_inputs_go_on_and_fail_at_the_end(tiny_ensemble: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    good = (SAMPLES / "astronaut.png").read_bytes()
    (tmp_path / "corrupt.png").write_bytes(good[: len(good) // 50])
    inputs = [str(tmp_path / n) for n in ("empty.jpg", "notes.txt", "corrupt.png", "missing.png")]
    result = run_cli("predict", *inputs, str(NO_FACE), str(SAMPLES / "astronaut.png"),
                     "--ensemble", str(tiny_ensemble), check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "empty.jpg: empty file" in result.stderr
    assert "notes.txt: not a readable image" in result.stderr
    assert "corrupt.png: not a readable image" in result.stderr
    assert "missing.png: no such file" in result.stderr
    assert "no_face.png: no face found" in result.stdout and "no face" not in result.stderr  # said once
    assert "astronaut.png: 1 face" in result.stdout  # the batch went on
    assert "5 image(s): 1 with faces (1 face), 1 without a face, 4 failed" in result.stderr


def test_video_outputs(tiny_ensemble: Path, tmp_path: Path) -> None:
    out = tmp_path / "video"
    result = run_cli("video", str(CLIP), "--ensemble", str(tiny_ensemble), "--out", str(out), "--stride", "2")
    summary = json.loads(result.stdout)
    assert summary["frames_read"] == 60 and summary["frames_processed"] == 30
    assert summary["tracks"] and all(t["frames"] > 0 for t in summary["tracks"].values())
    lines = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    assert [row["frame"] for row in lines] == list(range(0, 60, 2))
    assert max(len(row["faces"]) for row in lines) == 2
    rows = list(csv.DictReader(open(out / "timeline.csv")))
    assert len(rows) == sum(len(row["faces"]) for row in lines) and rows[0]["track_id"]
    assert cv2.imread(str(out / "timeline.png")) is not None
    annotated = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 30



def test_the_timeline_plot_says_which_tracks_it_shows_and_its_labels_do_not_collide(tmp_path: Path) -> None:
    """Robustness issue, item 19: with 160 tracks the plot shows the 6 longest and its title says so
    (every track when they fit); the last x tick and the unit "s" no longer overlap, whatever the
    video's length."""
    from fer_ensemble.apps.video import plot_timeline, tracks_title, x_axis_labels
    from fer_ensemble.constants import EMOTIONS

    assert tracks_title(6, 160) == "the 6 longest of 160 tracks (summary.json and timeline.csv have them all)"
    assert (tracks_title(4, 4), tracks_title(1, 1), tracks_title(0, 0)) == ("4 tracks", "1 track", "no faces")
    for end in (2.0, 59.9, 1234.5):
        labels = x_axis_labels(end, 70, 700)
        assert labels[-1][0] == "s" and len(labels) == 7
        assert all(x + width < next_x for (_, x, width), (_, next_x, _) in zip(labels, labels[1:])), labels
        assert labels[-1][1] + labels[-1][2] < 900 - 20  # inside the image, beside the legend column
    face = {"box": [0, 0, 9, 9], "probabilities": dict.fromkeys(EMOTIONS, 1 / 8)}
    timeline = [{"frame": f, "time": f / 10, "faces": [{**face, "track_id": t} for t in range(1, 161) if t <= f + 1]}
                for f in range(200)]
    plot_timeline(timeline, EMOTIONS, tmp_path / "timeline.png")
    image = cv2.imread(str(tmp_path / "timeline.png"))
    assert image.shape[0] == 26 + 6 * 180 + 30 and (image[:22, 70:] < 128).any()  # six panels under a title

def test_video_timeline_says_which_rows_are_read_against_a_resting_face(tmp_path: Path) -> None:
    """timeline.csv's ``relative`` column matches timeline.jsonl's: with --auto-resting-face (the
    shipped ensemble) some rows are 1 and, per track, only from its first such row on; without, none."""
    tables = {}
    for name, extra in (("plain", []), ("auto", ["--auto-resting-face"])):
        run_cli("video", str(CLIP), "--out", str(tmp_path / name), "--no-video", *extra)
        rows = list(csv.DictReader(open(tmp_path / name / "timeline.csv")))
        lines = [json.loads(line) for line in (tmp_path / name / "timeline.jsonl").read_text().splitlines()]
        assert [int(r["relative"]) for r in rows] == [int(f["relative"]) for line in lines for f in line["faces"]]
        tables[name] = rows
    assert not any(int(r["relative"]) for r in tables["plain"])
    relative = [(r["track_id"], int(r["relative"])) for r in tables["auto"]]
    assert any(flag for _, flag in relative)
    for track in {t for t, _ in relative}:
        flags = [flag for t, flag in relative if t == track]
        assert flags == sorted(flags)  # once a track is read against its resting face, it stays so


def test_video_frames_reads_a_range_as_reading_from_the_start_would() -> None:
    """The one frame reader of the video app and batch: indices from ``start``, ``stop`` exclusive."""
    whole = VideoFrames(CLIP)
    frames = list(whole)
    assert whole.frame_count == 60 and whole.fps == 15.0 and whole.read == 60
    assert [i for i, _ in frames] == list(range(60))
    part = VideoFrames(CLIP, start=50, stop=55)
    assert [(i, np.array_equal(frame, frames[i][1])) for i, frame in part] == [(i, True) for i in range(50, 55)]
    assert part.read == 5
    tail = VideoFrames(CLIP, start=58, stop=100)
    assert [i for i, _ in tail] == [58, 59] and tail.read == 2


def test_video_bad_inputs(tiny_ensemble: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a video")
    result = run_cli("video", str(tmp_path / "notes.txt"), "--ensemble", str(tiny_ensemble), check=False)
    assert result.returncode == 1 and "notes.txt: not a video (a text file)" in result.stderr
    assert "Traceback" not in result.stderr
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(CLIP.read_bytes()[: CLIP.stat().st_size * 2 // 3])
    result = run_cli("video", str(truncated), "--ensemble", str(tiny_ensemble), "--out", str(tmp_path / "t"),
                     check=False)
    assert "Traceback" not in result.stderr
    assert result.returncode != 0 and ("ended early" in result.stderr or "not a readable video" in result.stderr)


def test_webcam_headless_from_a_file(tiny_ensemble: Path) -> None:
    result = run_cli("webcam", "--source", str(CLIP), "--no-window", "--max-frames", "12",
                     "--ensemble", str(tiny_ensemble))
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert 1 <= len(frames) <= 12
    assert all(face["track_id"] is not None for frame in frames for face in frame["faces"])
    assert "fps" in result.stderr


def test_webcam_that_cannot_open(tiny_ensemble: Path) -> None:
    result = run_cli("webcam", "--camera", "97", "--no-window", "--ensemble", str(tiny_ensemble), check=False)
    assert result.returncode == 1 and "camera 97 cannot be opened" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_window_to_open_is_one_line_and_the_demo_falls_back_to_the_samples(
        tiny_ensemble: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a window (the headless OpenCV build), the live view refuses in one UserError, and
    the demo, which would show the webcam, takes the bundled samples instead."""
    from fer_ensemble.apps import demo, webcam
    from fer_ensemble.errors import UserError

    monkeypatch.setattr(webcam, "window_available", lambda: False)
    monkeypatch.setattr(demo, "window_available", lambda: False)
    with pytest.raises(UserError, match="cannot open windows"):
        webcam.watch(EmotionRecognizer(tiny_ensemble), cv2.VideoCapture(str(CLIP)), show=True)
    monkeypatch.setenv("DISPLAY", ":0")
    capture = cv2.VideoCapture
    monkeypatch.setattr(demo.cv2, "VideoCapture", lambda index: capture(str(CLIP)))  # a camera that opens
    assert not demo.camera_and_display(0)


def test_missing_ensemble_is_one_line(tmp_path: Path) -> None:
    result = cli_in_process("predict", str(SAMPLES / "astronaut.png"), "--ensemble", str(tmp_path / "none.json"))
    assert result.returncode == 2 and "no ensemble file" in result.stderr and "Traceback" not in result.stderr


def test_demo_on_the_bundled_samples(tiny_ensemble: Path, tmp_path: Path) -> None:
    result = run_cli("demo", "--samples", "--out", str(tmp_path / "demo"), "--ensemble", str(tiny_ensemble),
                     check=False)
    assert result.returncode == 0, result.stderr
    assert "astronaut.png: 1 face" in result.stdout
    assert (tmp_path / "demo" / "video" / "annotated.mp4").is_file()
    assert len(list((tmp_path / "demo" / "images").iterdir())) == 3


def test_benchmark_table(tiny_ensemble: Path) -> None:
    result = run_cli("benchmark", "--repeat", "2", "--ensemble", str(tiny_ensemble))
    assert "fps, webcam pipeline (measured end to end)" in result.stdout and "detect (ms)" in result.stdout
    assert "fps, webcam pipeline, automatic resting faces" in result.stdout
    assert "through a profile" not in result.stdout  # tiny members have no embedding output
    assert "PyTorch / ONNX Runtime" not in result.stdout  # tiny members have no torch twin
    rows = json.loads(run_cli("benchmark", "--repeat", "2", "--no-torch", "--no-pipeline", "--json",
                              "--ensemble", str(tiny_ensemble)).stdout)
    assert [r["faces_found"] for r in rows] == [1, 4]


def test_the_benchmark_measures_the_webcam_loop_with_face_geometry(tiny_ensemble: Path) -> None:
    """``benchmark --geometry`` adds a webcam-loop run in which every face shown gets its geometry
    (its table rows 'fps, webcam pipeline, with face geometry'); here 30 frames, in process."""
    from fer_ensemble.apps.benchmark import add_benchmark_arguments, measure_pipeline

    parser = argparse.ArgumentParser()
    add_benchmark_arguments(parser)
    args = parser.parse_args(["--ensemble", str(tiny_ensemble), "--geometry"])
    timed = measure_pipeline(args, 1, frames=30, geometry=True)
    assert timed["frames"] > 0 and timed["fps"] > 0 and timed["with_geometry"] > 0  # all but the first frames
    assert timed["geometry_reads_per_second"] > 0
    assert measure_pipeline(args, 1, frames=10)["with_geometry"] == 0  # asked for only by that run


def test_apps_never_import_torch(tiny_ensemble: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None; from fer_ensemble.cli import main; "
        f"rc = main(['predict', {str(SAMPLES / 'astronaut.png')!r}, '--ensemble', {str(tiny_ensemble)!r}]); "
        "import fer_ensemble.runtime.recognizer, fer_ensemble.apps.webcam, fer_ensemble.apps.video; "
        "raise SystemExit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("option", [["--margin", "-1"], ["--detect-width", "-5"], ["--scale-factor", "1.0"],
                                    ["--threads", "0"], ["--prior", "3"], ["--offset", "x"]])
def test_out_of_range_options_are_usage_errors(option: list[str]) -> None:
    result = cli_in_process("predict", str(SAMPLES / "grace_hopper.jpg"), *option)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert option[0] in result.stderr


def test_the_stills_benchmark_says_which_inputs_it_left_out(tmp_path: Path, faces_dir: Path, user_cases: Path,
                                                           taiwan_posed: Path) -> None:
    """Issue 24, item 8: run outside a checkout beside ../shared, the stills study names each
    input it cannot find (and the option to give) instead of printing a shorter table silently."""
    import argparse

    from tools.stills_study import DEFAULT_LABELS, missing_inputs

    absent = str(tmp_path / "absent")
    args = argparse.Namespace(group_labels=str(REPO / DEFAULT_LABELS), group_photos=absent, user_cases=absent,
                              taiwan=absent)
    lines = missing_inputs(args)
    assert [line.split(":")[0] for line in lines] == ["the group photos", "the user-case photos", "taiwan-posed"]
    assert all("give --" in line for line in lines)
    assert missing_inputs(argparse.Namespace(group_labels=str(REPO / DEFAULT_LABELS), group_photos=str(faces_dir),
                                             user_cases=str(user_cases), taiwan=str(taiwan_posed))) == []
