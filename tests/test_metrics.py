"""Metric arithmetic on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from fer_ensemble.labelled import score_predictions
from fer_ensemble.metrics import (
    evaluate_probabilities,
    expected_calibration_error,
    macro_recall,
    per_class_metrics,
    seven_class_view,
)


def one_hot(indices: list[int], confidence: float = 1.0) -> np.ndarray:
    probs = np.full((len(indices), 8), (1 - confidence) / 7)
    probs[np.arange(len(indices)), indices] = confidence
    return probs


def test_accuracy_f1_and_confusion() -> None:
    labels = np.array([0, 0, 1, 1, 2, 7])
    predicted = [0, 1, 1, 1, 2, 0]
    report = evaluate_probabilities(one_hot(predicted), labels)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.per_class["neutral"].precision == pytest.approx(1 / 2)
    assert report.per_class["neutral"].recall == pytest.approx(1 / 2)
    assert report.per_class["happiness"].precision == pytest.approx(2 / 3)
    assert report.per_class["happiness"].recall == pytest.approx(1.0)
    assert report.per_class["contempt"].f1 == 0.0
    f1s = [0.5, 0.8, 1.0, 0, 0, 0, 0, 0]
    assert report.macro_f1 == pytest.approx(np.mean(f1s))
    assert np.array(report.confusion).sum() == 6 and report.confusion[0][1] == 1


def test_seven_class_view_drops_contempt_images_and_probability() -> None:
    probs = np.zeros((3, 8))
    probs[0, [7, 3]] = [0.6, 0.4]  # predicted contempt, true sadness: sadness once contempt is out
    probs[1, 7] = 1.0  # a contempt image: left out
    probs[2, 0] = 1.0
    seven_probs, seven_labels = seven_class_view(probs, np.array([3, 7, 0]))
    assert seven_probs.shape == (2, 7)
    assert list(seven_labels) == [3, 0] and list(seven_probs.argmax(1)) == [3, 0]
    report = evaluate_probabilities(probs, np.array([3, 7, 0]))
    assert report.accuracy == pytest.approx(2 / 3) and report.accuracy_7class == 1.0
    assert report.n_images_7class == 2


def test_ece() -> None:
    labels = np.array([0, 0, 0, 0])
    assert expected_calibration_error(one_hot([0, 0, 0, 0]), labels) == pytest.approx(0.0)
    # confidence 0.8 everywhere, half right: |0.5 - 0.8| = 0.3
    assert expected_calibration_error(one_hot([0, 0, 1, 1], 0.8), labels) == pytest.approx(0.3)


def test_one_macro_recall_classes_present_only_and_no_face_a_miss() -> None:
    """Issue 24, item 7: evaluate's report and the labelled-images scores share one definition."""
    labels = np.array([0, 0, 1, 1, 2, 7])  # four classes present, four absent
    predicted = np.array([0, 1, 1, 1, 2, 0])
    expected = (1 / 2 + 1 + 1 + 0) / 4  # absent classes left out, not counted as 0
    assert macro_recall(labels, predicted, 8) == pytest.approx(expected)
    assert evaluate_probabilities(one_hot(list(predicted)), labels).macro_recall == pytest.approx(expected)
    assert score_predictions(labels, predicted).macro_recall == pytest.approx(expected)
    no_face = np.array([0, -1, 1, 1, 2, 0])  # the second neutral face not found: a miss, as a wrong class
    assert score_predictions(labels, no_face).macro_recall == pytest.approx(expected)
    assert macro_recall(np.array([], np.int64), np.array([], np.int64), 8) == 0.0


def test_the_documented_figures_do_not_move() -> None:
    """The merged definition gives what both report types printed before (docs' tables quote them)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, rng.integers(2, 9), 200)
        probabilities = rng.dirichlet(np.ones(8), 200)
        predictions = probabilities.argmax(axis=1)
        report = evaluate_probabilities(probabilities, labels)
        old = np.mean([m.recall for m in report.per_class.values() if m.support > 0])  # evaluate's formula
        assert report.macro_recall == pytest.approx(old, abs=1e-12)
        seven_probs, seven_labels = seven_class_view(probabilities, labels)
        matrix = np.zeros((7, 7), np.int64)
        np.add.at(matrix, (seven_labels, seven_probs.argmax(axis=1)), 1)
        old7 = [m.recall for m in per_class_metrics(matrix) if m.support > 0]
        assert report.macro_recall_7class == pytest.approx(np.mean(old7) if old7 else 0.0, abs=1e-12)
        missed = np.where(rng.random(200) < 0.2, -1, predictions)
        support = np.bincount(labels, minlength=8)
        hits = np.array([((missed == c) & (labels == c)).sum() for c in range(8)])
        old_scores = (hits / np.clip(support, 1, None))[support > 0].mean()  # labelled's formula
        assert score_predictions(labels, missed).macro_recall == pytest.approx(old_scores, abs=1e-12)
