"""Metric arithmetic on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from fer_ensemble.metrics import evaluate_probabilities, expected_calibration_error, seven_class_view


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
