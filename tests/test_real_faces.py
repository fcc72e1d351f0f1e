"""Real faces: class priors, evaluation on any labelled images (CK+48 in CI), FER+ framing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import cli_in_process, run_cli, run_script

from fer_ensemble.labelled import (
    LabelsError,
    class_index,
    evaluate_crops,
    evaluate_photos,
    read_labelled_images,
)
from fer_ensemble.prior import adjust_probabilities, parse_strength
from fer_ensemble.runtime.classifier import softmax
from fer_ensemble.runtime.detection import FACE_FRAMING, crop_faces, expand_box
from fer_ensemble.runtime.ensemble import Ensemble

PRIOR = np.array([0.34, 0.27, 0.12, 0.14, 0.09, 0.009, 0.028, 0.009])


# --- priors -------------------------------------------------------------------------------------

def test_prior_strength_zero_changes_nothing_and_one_divides_the_prior_out() -> None:
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(50, 8)))
    assert np.array_equal(adjust_probabilities(probs, PRIOR, 0.0), probs)
    # a face the model knows nothing about answers the prior; with the prior divided out, nothing
    uninformed = np.tile(PRIOR / PRIOR.sum(), (3, 1))
    assert np.allclose(adjust_probabilities(uninformed, PRIOR, 1.0), 1 / 8)
    half = adjust_probabilities(probs, PRIOR, 0.5)
    assert np.allclose(half.sum(axis=1), 1.0)
    # rare classes gain, the commonest loses, monotonically in the strength
    assert (half[:, 5] > probs[:, 5]).all() and (half[:, 0] < probs[:, 0]).all()
    assert (adjust_probabilities(probs, PRIOR, 1.0)[:, 5] > half[:, 5]).all()


@pytest.mark.parametrize("text, strength", [("ferplus", 0.0), ("uniform", 1.0), ("0.25", 0.25)])
def test_prior_names_and_numbers(text: str, strength: float) -> None:
    assert parse_strength(text) == strength


@pytest.mark.parametrize("bad", ["balanced", "1.5", "-0.1", ""])
def test_prior_rejects_what_is_not_a_strength(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_strength(bad)


def test_ensemble_answers_under_the_prior_asked_for(tiny_ensemble: Path) -> None:
    config = json.loads(tiny_ensemble.read_text())
    config["prior"] = {"class_prior": PRIOR.tolist(), "strength": 1.0}
    tiny_ensemble.write_text(json.dumps(config))
    ensemble = Ensemble.load(tiny_ensemble)
    faces = [np.random.default_rng(i).integers(0, 256, (40, 40), dtype=np.uint8) for i in range(4)]
    native = ensemble.predict_proba(faces, prior_strength="ferplus")
    default = ensemble.predict_proba(faces)
    assert ensemble.default_prior_strength == 1.0
    assert np.allclose(default, adjust_probabilities(native, PRIOR, 1.0), atol=1e-6)
    assert np.allclose(default.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        ensemble.predict_proba(faces, prior_strength=2.0)


def test_ensemble_without_a_recorded_prior_refuses_to_adjust(tiny_ensemble: Path) -> None:
    ensemble = Ensemble.load(tiny_ensemble)
    assert ensemble.prior_strength() == 0.0
    with pytest.raises(ValueError, match="no class prior"):
        ensemble.prior_strength("uniform")


# --- evaluation on labelled images -----------------------------------------------------------------

def write_labels(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Gray squares as 'faces', a file,label,clip CSV; the brightness encodes the true class."""
    for name, label, _ in rows:
        cv2.imwrite(str(folder / name), np.full((48, 48), 20 * class_index(label) + 10, np.uint8))
    path = folder / "labels.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "clip"])
        writer.writerows(rows)
    return path


def brightness_classifier(wrong_for: set[int]):
    """Reads the class from the brightness, except for the classes in ``wrong_for`` (-> neutral)."""
    def predict(faces: list[np.ndarray]) -> np.ndarray:
        probs = np.full((len(faces), 8), 0.01)
        for i, face in enumerate(faces):
            label = int(round((float(face.mean()) - 10) / 20))
            probs[i, 0 if label in wrong_for else label] = 0.93
        return probs
    return predict


def test_crops_are_scored_per_image_and_per_group(tmp_path: Path) -> None:
    rows = [("a1.png", "anger", "c1"), ("a2.png", "angry", "c1"), ("a3.png", "anger", "c1"),
            ("h1.png", "happiness", "c2"), ("h2.png", "happy", "c2"),
            ("d1.png", "disgust", "c3")]
    data = read_labelled_images(write_labels(tmp_path, rows), group_by="clip")
    report = evaluate_crops(brightness_classifier(wrong_for={5}), data)
    assert report.per_image.n == 6 and report.per_image.accuracy == pytest.approx(5 / 6)
    assert report.per_image.macro_recall == pytest.approx((1 + 1 + 0) / 3)  # classes present only
    assert report.per_image.predicted_share["neutral"] == pytest.approx(1 / 6)
    assert report.n_groups == 3 and report.per_group.accuracy == pytest.approx(2 / 3)
    assert report.per_image.per_class["disgust"]["recall"] == 0.0


def test_photos_without_a_face_count_as_wrong_and_are_reported(tmp_path: Path) -> None:
    rows = [("a.png", "anger", "x"), ("b.png", "fear", "y")]
    data = read_labelled_images(write_labels(tmp_path, rows))

    class OnlyBrightFaces:  # finds a "face" in the anger image only
        seen: list[int] = []

        def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
            self.seen.append(gray.ndim)
            return [(4, 4, 40, 40)] if gray.mean() < 100 else []

    detector = OnlyBrightFaces()
    report = evaluate_photos(brightness_classifier(set()), data, detector, margin=0.0)
    assert detector.seen == [2, 2]  # a gray detector gets the gray copy the crops use
    assert report.per_image.no_face == 1 and report.per_image.accuracy == 0.5
    assert report.per_image.per_class["fear"]["recall"] == 0.0
    assert report.per_image.predicted_share["no face"] == 0.5


def test_labels_files_with_mistakes_get_one_clear_error(tmp_path: Path) -> None:
    path = write_labels(tmp_path, [("a.png", "anger", "x")])
    (tmp_path / "bad.csv").write_text("file,label\na.png,grumpy\n")
    with pytest.raises(LabelsError, match="unknown label 'grumpy'"):
        read_labelled_images(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("file,label\nnope.png,anger\n")
    with pytest.raises(LabelsError, match="not found"):
        read_labelled_images(tmp_path / "missing.csv")
    with pytest.raises(LabelsError, match="no column 'session'"):
        read_labelled_images(path, group_by="session")
    result = cli_in_process("evaluate", "--labels", str(tmp_path / "bad.csv"), "--crops")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "grumpy" in result.stderr
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    (tmp_path / "corrupt.csv").write_text("file,label\ncorrupt.png,anger\n")
    for mode in (["--crops"], []):  # the classifier alone, and photos through the detector
        result = run_cli("evaluate", "--labels", str(tmp_path / "corrupt.csv"), *mode, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "corrupt.png: not a readable image" in result.stderr


def test_evaluate_measures_ckplus48_per_image_and_per_sequence(ckplus48: Path, tmp_path: Path) -> None:
    result = json.loads(run_cli(
        "evaluate", "--labels", str(ckplus48 / "labels.csv"), "--images", str(ckplus48 / "images"),
        "--crops", "--group-by", "subject,sequence", "--groups", str(ckplus48 / "sequences.csv"),
        "--json", "--out", str(tmp_path)).stdout)
    assert result["per_image"]["n"] == 981 and result["n_groups"] == 327
    assert result["per_image"]["per_class"]["neutral"]["support"] == 0
    assert result["per_group"]["per_class"]["anger"]["support"] == 45
    recalls = [c["recall"] for c in result["per_group"]["per_class"].values() if c["support"]]
    assert len(recalls) == 7 and result["per_group"]["macro_recall"] == pytest.approx(sum(recalls) / 7)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json", ".png", ".png"]  # the manifest too


# --- framing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("detector", ["haar", "blazeface"])
def test_default_framing_matches_each_detector_on_ferplus_faces(ferplus: Path, detector: str) -> None:
    """Each detector's box on FER+ images (BlazeFace's as the runtime frames it), turned into a crop
    with the defaults, is the FER+ frame."""
    measured = json.loads(run_script("measure_framing.py", "--data", str(ferplus), "--split", "train",
                                     "--images", "400", "--detector", detector).stdout)
    assert measured["found"] > 300
    assert abs(measured["margin"][1] - FACE_FRAMING["margin"]) < 0.02
    assert abs(measured["offset"][1] - FACE_FRAMING["offset"]) < 0.02


def test_crops_at_the_frame_edge_keep_their_size_and_position() -> None:
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    box = (-10, 60, 50, 50)  # half outside on the left and bottom
    (crop,) = crop_faces(gray, [box], margin=0.1, offset=0.0)
    x, y, w, h = expand_box(box, 0.1)
    assert crop.shape == (h, w) == (60, 60)
    assert crop[20, 30] == gray[y + 20, x + 30]  # inside the frame: the same pixel
    assert crop[-1, -1] == gray[-1, x + w - 1]  # below the frame: the edge row repeated


def test_offsets_bring_rebalanced_networks_back_to_ferplus_prior() -> None:
    """An uninformed network answers the prior it saw; the recorded offset turns that into FER+'s."""
    from fer_ensemble.prior import prior_logit_offset

    seen = np.full(8, 1 / 8)  # class-balanced sampling, or logit adjustment with tau = 1
    uninformed = np.log(seen)[None]
    for offset in (prior_logit_offset(PRIOR, 0.0, sampled_prior=seen), prior_logit_offset(PRIOR, 1.0)):
        assert np.allclose(softmax(uninformed + offset), PRIOR / PRIOR.sum(), atol=1e-6)
    assert prior_logit_offset(PRIOR, 0.0) is None and prior_logit_offset(None, 1.0) is None
