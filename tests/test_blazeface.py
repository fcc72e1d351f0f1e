"""The optional BlazeFace detector: its shipped model, its tiling, its framing and its faces."""

from __future__ import annotations

import argparse
import csv
import json
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from support import NO_FACE, cli_in_process, run_cli, run_script, turned_portrait
from support.group_photos import BLAZEFACE_LEAST, FACES, LABELS, assert_group_photo_bar, group_photo_counts

from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.metrics import match_faces
from fer_ensemble.runtime.blazeface import (
    BLAZEFACE_FILE,
    BLAZEFACE_TO_HAAR,
    FALLBACK_FACE,
    SMALLEST_FACE,
    TURNED_SCORE_THRESHOLD,
    BlazeFaceDetector,
    BlazeFaceOptions,
    Detection,
    merge_turned,
    pyramid,
    tiles,
)
from fer_ensemble.runtime.detection import (
    HaarFaceDetector,
    HaarOptions,
    TurnedBox,
    crop_faces,
    expand_box,
    iou,
)
from fer_ensemble.runtime.detectors import SecondLook, create_detector


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


def test_the_shipped_model_takes_any_batch_and_carries_its_licence() -> None:
    session = ort.InferenceSession(str(BLAZEFACE_FILE), providers=["CPUExecutionProvider"])
    (batch_input,) = session.get_inputs()
    assert batch_input.shape[1:] == [3, 128, 128] and not isinstance(batch_input.shape[0], int)
    regressors, scores = session.run(None, {"input": np.zeros((5, 3, 128, 128), np.float32)})
    assert regressors.shape == (5, 896, 16) and scores.shape == (5, 896, 1)
    licence = BLAZEFACE_FILE.with_suffix(".LICENSE").read_text()
    assert "Apache License" in licence and "bbff11ce" in licence


@pytest.mark.parametrize("height,width,min_face", [(876, 1280, 40), (762, 562, 40), (480, 640, 80), (4032, 3024, 20)])
def test_the_pyramid_reaches_min_face_and_its_tiles_overlap_by_a_third(height, width, min_face) -> None:
    sides = pyramid(height, width, min_face)
    assert sides[0] == max(height, width) and sides == sorted(sides, reverse=True)
    assert sides[-1] * SMALLEST_FACE <= min_face * 1.01 or len(sides) == 1
    assert all(b >= a / 2 for a, b in pairwise(sides))  # no level skipped
    for side in sides[1:]:
        windows = tiles(height, width, side)
        covered = np.zeros((height, width), bool)
        for tile in windows:
            covered[tile.y:tile.y + side, tile.x:tile.x + side] = True
        assert covered.all()
        xs = sorted({t.x for t in windows})
        assert all(b - a <= side * 2 / 3 + 1 for a, b in pairwise(xs))  # a face of side/3 fits whole in one


def test_finds_the_single_faces_where_haar_puts_them(detector: BlazeFaceDetector, faces_dir: Path) -> None:
    """One face each, and the box framed as Haar's (BLAZEFACE_TO_HAAR), so crops do not change."""
    for name in ("skimage_astronaut.png", "matplotlib_grace_hopper.jpg", "codait_luciano.png"):
        image = cv2.imread(str(faces_dir / name))
        (box,) = detector.detect(image)
        (haar,) = HaarFaceDetector().detect(image)
        assert iou(box, haar) > 0.6, name


def test_gray_and_bgra_images_are_read_like_colour(detector: BlazeFaceDetector) -> None:
    image = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    (box,) = detector.detect(image)
    (gray_box,) = detector.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    (bgra_box,) = detector.detect(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))
    assert bgra_box == box and iou(gray_box, box) > 0.8
    assert detector.detect(np.full((300, 400, 3), 128, np.uint8)) == []


def test_the_group_photos_turned_heads_included(detector: BlazeFaceDetector, faces_dir: Path) -> None:
    """The issue's bar (support.group_photos) for BlazeFace as constructed by default."""
    assert_group_photo_bar(group_photo_counts(detector, faces_dir), BLAZEFACE_LEAST)


def test_a_coarse_level_that_covers_the_faces_ends_the_scan(detector: BlazeFaceDetector, faces_dir: Path) -> None:
    scans = []
    original = detector._scan
    detector._scan = lambda rgb, side: scans.append(side) or original(rgb, side)
    try:
        detector.detect(cv2.imread(str(SAMPLES / "grace_hopper.jpg")))
        assert scans == [600]  # one look at the whole portrait
        scans.clear()
        detector.detect(cv2.imread(str(faces_dir / "nasa_s131e010010_group_portrait.jpg")))
        assert scans == pyramid(876, 1280, detector.options.min_face)  # small faces: every level
    finally:
        del detector._scan


def test_a_tilted_head_that_haar_misses() -> None:
    tilted = turned_portrait(35)
    height, width = tilted.shape[:2]
    assert HaarFaceDetector().detect(tilted) == []
    (box,) = BlazeFaceDetector().detect(tilted)
    assert abs(box[0] + box[2] / 2 - width / 2) < 60 and abs(box[1] + box[3] / 2 - height / 2) < 150


def test_boxes_are_framed_as_haar_on_ferplus_faces(ferplus: Path) -> None:
    """BLAZEFACE_TO_HAAR is what scripts/measure_framing.py measures on FER+ images."""
    measured = json.loads(run_script("measure_framing.py", "--blazeface-to-haar", "--data", str(ferplus),
                                     "--split", "train", "--images", "400").stdout)
    assert measured["found_by_both"] > 250
    for key in ("scale", "dx", "dy", "eyes"):
        assert abs(measured[key][1] - BLAZEFACE_TO_HAAR[key]) < (0.05 if key == "eyes" else 0.03), (key, measured[key])


def test_create_detector_by_name() -> None:
    assert isinstance(create_detector(), BlazeFaceDetector)  # the default
    haar = create_detector({"detector": "haar", "equalize": "clahe"})
    assert isinstance(haar, SecondLook) and isinstance(haar.detector, HaarFaceDetector)  # with its second look
    assert isinstance(create_detector({"detector": "haar", "second_look": 0}), HaarFaceDetector)
    assert isinstance(create_detector({"detector": "blazeface", "min_face": 30}), BlazeFaceDetector)
    with pytest.raises(ValueError, match="unknown detector"):
        create_detector({"detector": "yolo"})
    with pytest.raises(ValueError, match="turned_scans must be one of off, fallback, always"):
        create_detector({"detector": "blazeface", "turned_scans": "sometimes"})
    with pytest.raises(ValueError, match="turned_scans is a setting of the blazeface detector, not of haar"):
        create_detector({"detector": "haar", "turned_scans": "off"})


def test_cli_predict_and_evaluate_with_blazeface(tmp_path: Path) -> None:
    result = run_cli("predict", str(SAMPLES / "grace_hopper.jpg"), "--detector", "blazeface", "--json")
    assert result.stdout.count('"label"') == 1
    bad = cli_in_process("predict", str(SAMPLES / "grace_hopper.jpg"), "--detector", "blazeface",
                         "--score-threshold", "1")
    assert bad.returncode == 2 and "--score-threshold" in bad.stderr
    for options, message in ((["--detector", "blazeface", "--rotations", "-25", "25"], "--rotations does not apply"),
                             (["--detector", "haar", "--score-threshold", "0.5"],
                              "--score-threshold does not apply to --detector haar"),
                             (["--equalize", "global"], "--equalize does not apply to --detector blazeface"),
                             # Haar's options are refused whatever their value, even a preset's own
                             (["--detect-width", "240"], "--detect-width does not apply to --detector blazeface"),
                             (["--equalize", "none"], "--equalize does not apply to --detector blazeface"),
                             (["--second-look", "0.6"], "--second-look does not apply to --detector blazeface"),
                             (["--detector", "haar", "--turned-scans", "off"],
                              "--turned-scans does not apply to --detector haar")):
        ignored = cli_in_process("predict", str(SAMPLES / "grace_hopper.jpg"), *options)
        assert ignored.returncode == 2 and message in ignored.stderr and "Traceback" not in ignored.stderr
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,label\n{SAMPLES / 'grace_hopper.jpg'},neutral\n{NO_FACE},neutral\n")
    result = run_cli("evaluate", "--labels", str(labels), "--detector", "blazeface", "--json")
    assert '"detector": "blazeface"' in result.stdout


# --- turned heads: the roll and upright crops ------------------------------------------------------

@pytest.mark.parametrize("angle", [-50, -25, 0, 25, 50])
def test_the_roll_is_the_turn_of_the_head(detector: BlazeFaceDetector, angle: float) -> None:
    (upright,) = detector.detect(turned_portrait(0))
    (box,) = detector.detect(turned_portrait(angle))
    assert abs(box.roll - (upright.roll - angle)) < 10, box.roll


def test_a_turned_box_is_a_box_that_pickles() -> None:
    import pickle

    box = TurnedBox((10, 20, 30, 30), roll=-32.5)
    assert box == (10, 20, 30, 30) and tuple(box) == (10, 20, 30, 30)
    assert pickle.loads(pickle.dumps(box)).roll == -32.5 and expand_box(box, 0.1) == (7, 17, 36, 36)


def test_upright_crops_of_a_turned_head_match_the_upright_photo() -> None:
    """Turned by 40 degrees, the face cropped upright is the upright photo's crop again; its
    emotion probabilities come out closer to the upright photo's than those of the crop as found."""
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer(detector=BlazeFaceDetector())
    (upright,) = recognizer.predict(turned_portrait(0))
    image = turned_portrait(40)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    (box,) = recognizer.detect(image)
    (as_found,) = crop_faces(gray, [tuple(box)])
    (turned_back,) = crop_faces(gray, [box])
    (reference,) = crop_faces(cv2.cvtColor(turned_portrait(0), cv2.COLOR_BGR2GRAY),
                              recognizer.detect(turned_portrait(0)))

    def similarity(crop: np.ndarray) -> float:  # of the face's layout, at 16 px
        small = [cv2.resize(c, (16, 16), interpolation=cv2.INTER_AREA).ravel() for c in (crop, reference)]
        return float(np.corrcoef(*small)[0, 1])

    assert similarity(turned_back) > 0.75 and similarity(as_found) < 0.5
    probabilities = [recognizer.ensemble.predict_proba([crop])[0] for crop in (turned_back, as_found)]
    expected = np.array([upright.probabilities[c] for c in recognizer.classes])
    assert np.abs(probabilities[0] - expected).sum() < np.abs(probabilities[1] - expected).sum()


def test_an_upside_down_head_is_found_and_turned_back(detector: BlazeFaceDetector, faces_dir: Path) -> None:
    """Its keypoints are only right when the face is looked at turned: the roll comes out near 180."""
    (box,) = detector.detect(turned_portrait(180))
    assert abs(abs(box.roll) - 180) < 15, box.roll
    (unchecked,) = BlazeFaceDetector(upside_down_check=0).detect(turned_portrait(180))
    assert abs(unchecked.roll) < 30  # the model alone reads the eyes as if the face were upright
    with open(LABELS, newline="") as f:
        rows = list(csv.DictReader(f))
    poses = {(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"])): r["pose"] for r in rows
             if r["file"] == "nasa_s131e010010_group_portrait.jpg"}
    found = detector.detect(cv2.imread(str(faces_dir / "nasa_s131e010010_group_portrait.jpg")))
    rolls = {pose: [] for pose in poses.values()}
    for box in found:
        (face,) = [face for face in poses if match_faces([box], [face]).true_positives]
        rolls[poses[face]].append(abs(box.roll))
    assert all(roll < 45 for roll in rolls["frontal"]), rolls  # upright faces stay upright
    assert any(roll > 150 for roll in rolls["upside down"]), rolls  # one of the two found is righted


# --- turned scans: heads upside down or sideways -----------------------------------------------------

@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_face_found_in_a_turned_scan_is_put_back_where_it_lies(turn: int) -> None:
    """The portrait given a quarter turn counter-clockwise: the turned scan that sees it upright
    finds the upright portrait's face, put back where it lies in the turned image (centre, sides
    swapped or not) with the turn added to its roll (a wrong mapping is off by a face or 90 degrees)."""
    portrait = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    detector = BlazeFaceDetector(turned_scans="off")
    (upright,) = detector.detections(portrait)
    image = np.ascontiguousarray(np.rot90(portrait, turn // 90))  # counter-clockwise
    (found,) = detector.turned_detections(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), upright=[])
    height, width = portrait.shape[:2]
    cx, cy = upright.x + upright.w / 2, upright.y + upright.h / 2
    expected = {90: (cy, width - cx), 180: (width - cx, height - cy), 270: (height - cy, cx)}[turn]
    side = upright.w  # the turned scans read a copy shrunk to what their finest tiles show: not to the pixel
    assert np.allclose((found.x + found.w / 2, found.y + found.h / 2), expected, atol=0.02 * side), (found, expected)
    assert np.allclose((found.w, found.h), (upright.h, upright.w) if turn % 180 else (upright.w, upright.h),
                       atol=0.03 * side)
    assert abs((found.roll - upright.roll + turn + 180) % 360 - 180) < 2, found.roll
    assert found.score == pytest.approx(upright.score, abs=0.02)


def test_turned_scans_run_as_asked() -> None:
    """fallback: only for a photo with no upright face (a portrait costs one scan, as without),
    and then for faces of an eighth of its short side and more; always: every photo, down to
    ``min_face``; off: never. A turned scan drops boxes below ``TURNED_SCORE_THRESHOLD`` as it
    reads each level (so that one cannot end its pyramid early)."""
    def scans(turned_scans: str, image: np.ndarray) -> list[tuple]:
        detector = BlazeFaceDetector(turned_scans=turned_scans)
        calls: list[tuple] = []
        pyramid, turned = detector._pyramid, detector.turned_detections
        detector._pyramid = lambda rgb, *more: calls.append(("scan", *more[2:])) or pyramid(rgb, *more)
        detector.turned_detections = lambda rgb, upright, least=None, min_face=None: (
            calls.append(("turned", min_face)) or turned(rgb, upright, least, min_face))
        detector.detect(image)
        return calls

    portrait, blank = cv2.imread(str(SAMPLES / "grace_hopper.jpg")), np.full((300, 400, 3), 128, np.uint8)
    assert [len(scans(mode, portrait)) for mode in ("off", "fallback")] == [1, 1]
    least = TURNED_SCORE_THRESHOLD
    assert scans("always", portrait) == [("scan",), ("turned", None), *[("scan", least)] * 3]
    assert scans("off", blank) == [("scan",)]
    fallback_face = max(BlazeFaceOptions().min_face, FALLBACK_FACE * 300)
    assert scans("fallback", blank) == [("scan",), ("turned", fallback_face), *[("scan", least)] * 3]


def test_turned_scans_find_every_group_photo_face(faces_dir: Path) -> None:
    """Always: the two faces the upright scan misses (one upside down, one sideways) are found
    too, and no false box comes with them (docs/detection.md)."""
    assert_group_photo_bar(group_photo_counts(BlazeFaceDetector(turned_scans="always"), faces_dir), FACES)


def test_a_face_found_turned_with_a_higher_score_takes_the_turned_box_and_roll() -> None:
    """The merge rule of ``turned_scans="always"``: an upright detection held by a turned one that
    scores higher is replaced by it (box, score, roll); a surer upright one stays; a turned face
    that no upright one holds is added; one turned face replaces one upright face at most."""
    upright = [Detection(100, 100, 60, 60, 0.82, -9.5, 25),  # upside down, read with the wrong roll
               Detection(300, 100, 60, 60, 0.97, 5.0, 25),   # upright and sure
               Detection(500, 100, 60, 60, 0.75, 2.0, 25)]
    turned = [Detection(96, 92, 66, 66, 0.90, -160.0, 28),
              Detection(302, 104, 58, 58, 0.94, 90.0, 24),
              Detection(700, 300, 50, 50, 0.95, -99.0, 20)]
    merged = merge_turned(upright, turned)
    assert merged == [turned[0], upright[1], upright[2], turned[2]]
    twice = [Detection(100, 100, 60, 60, 0.80, 0.0, 25), Detection(104, 100, 60, 60, 0.79, 0.0, 25)]
    assert merge_turned(twice, [Detection(101, 100, 60, 60, 0.95, 180.0, 25)]) == [
        Detection(101, 100, 60, 60, 0.95, 180.0, 25), twice[1]]
    assert merge_turned(upright, []) == upright and merge_turned([], turned) == turned


def test_the_smiling_upside_down_astronaut_is_read_turned_back(faces_dir: Path) -> None:
    """The group portrait's top upside-down astronaut: the upright scan finds her (0.82) with an
    upright roll, so she read neutral 0.44; the turned scan finds her surer (0.90) and upside down,
    and with ``--turned-scans always`` she is read as turned by hand: happiness, above 0.8."""
    photo = faces_dir / "nasa_s131e010010_group_portrait.jpg"
    faces = json.loads(run_cli("predict", str(photo), "--turned-scans", "always", "--json").stdout)["faces"]
    label = (772, 139, 80, 80)  # benchmarks/group-photo-faces.csv: "upside down"
    (face,) = [f for f in faces if match_faces([tuple(f["box"])], [label]).true_positives]
    assert face["label"] == "happiness" and face["score"] > 0.8, face
    (box,) = [b for b in BlazeFaceDetector(turned_scans="always").detect(cv2.imread(str(photo)))
              if match_faces([b], [label]).true_positives]
    assert abs(abs(box.roll) - 180) < 30, box.roll


def test_live_video_keeps_the_chosen_detector() -> None:
    """Server streams and batch videos use the live preset of the detector chosen for photos."""
    from fer_ensemble.apps.batch import add_batch_arguments, batch_settings
    from fer_ensemble.runtime.detectors import live_settings
    from fer_ensemble.runtime.recognizer import load_ensemble
    from fer_ensemble.server.app import Recognizers

    assert isinstance(create_detector(live_settings()), BlazeFaceDetector)  # the default's live preset
    haar = create_detector(live_settings({"detector": "haar", "second_look": 0}))
    assert isinstance(haar, HaarFaceDetector) and haar.options == HaarOptions.live(second_look=0)
    live = create_detector(live_settings({"detector": "blazeface", "score_threshold": 0.6, "turned_scans": "always"}))
    assert isinstance(live, BlazeFaceDetector) and live.options == BlazeFaceOptions.live(score_threshold=0.6)
    ensemble = load_ensemble()
    assert isinstance(Recognizers(ensemble, {"detector": "blazeface"}).live.detector, BlazeFaceDetector)
    assert isinstance(Recognizers(ensemble).live.detector, BlazeFaceDetector)
    assert isinstance(Recognizers(ensemble, {"detector": "haar"}).live.detector.detector, HaarFaceDetector)
    parser = argparse.ArgumentParser()
    add_batch_arguments(parser)
    settings = batch_settings(parser.parse_args(["in", "--out", "out", "--detector", "blazeface"]))
    assert settings.photo_detector["detector"] == settings.video_detector["detector"] == "blazeface"
    # recorded with each source and sent to workers, maybe on other machines: no path of this install
    haar = batch_settings(parser.parse_args(["in", "--out", "out", "--detector", "haar", "--min-face", "60"]))
    assert haar.photo_detector == {"detector": "haar", "min_face": 60}
    assert not {"model", "cascade"} & {*settings.photo_detector, *settings.video_detector, *haar.video_detector}


def test_the_recognizer_gives_colour_only_to_a_detector_that_reads_it() -> None:
    from fer_ensemble.runtime.recognizer import EmotionRecognizer, load_ensemble

    class Spy:
        def __init__(self, reads_colour: bool):
            self.reads_colour, self.seen = reads_colour, []

        def detect(self, image: np.ndarray) -> list:
            self.seen.append(image.ndim)
            return []

    ensemble = load_ensemble()
    image = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    for reads_colour, ndim in ((True, 3), (False, 2)):
        spy = Spy(reads_colour)
        recognizer = EmotionRecognizer(ensemble, detector=spy)
        recognizer.predict(image)
        recognizer.stream().update(image)
        assert spy.seen == [ndim, ndim]


@pytest.mark.parametrize("turned_scans", ["fallback", "always"])
def test_a_thin_photo_is_scanned_turned_without_an_error(turned_scans: str) -> None:
    """A banner a pixel or a few high: the shrunk copy the turned scans read keeps a pixel a side."""
    detector = BlazeFaceDetector(turned_scans=turned_scans)
    for shape in ((1, 1000, 3), (7, 900, 3), (1000, 1, 3)):
        assert detector.detect(np.full(shape, 128, np.uint8)) == []


def test_turned_scans_add_no_box_to_the_held_out_posed_photos(taiwan_posed: Path, tmp_path: Path) -> None:
    """taiwan-posed (one upright performer a photo, not used to choose ``TURNED_SCORE_THRESHOLD``):
    every box a turned scan adds there is false, and none reaches the threshold (docs/detection.md)."""
    from tools.stills_study import TAIWAN_FALSE_BOXES, turned_scores

    absent = str(tmp_path / "absent")
    args = argparse.Namespace(group_labels=absent, group_photos=absent, user_cases=absent, taiwan=str(taiwan_posed))
    photos = sum(1 for _ in (taiwan_posed / "labels.csv").open()) - 1
    turned = turned_scores(args)
    assert list(turned) == [TAIWAN_FALSE_BOXES.format(photos=photos)] and photos == 625, turned
    assert max(turned[TAIWAN_FALSE_BOXES.format(photos=photos)], default=0.0) < TURNED_SCORE_THRESHOLD, turned
