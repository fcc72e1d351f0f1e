"""The ensemble shipped in the package reproduces, on the full FER+ test set, what its files record."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from conftest import run_cli
from fer_ensemble.apps.media import SAMPLES
from fer_ensemble.data import load_labelled
from fer_ensemble.evaluate import evaluate_on_split
from fer_ensemble.runtime import EmotionRecognizer
from fer_ensemble.runtime.recognizer import SHIPPED_ENSEMBLE, WEIGHTS_DIR, load_ensemble


def test_shipped_weights_fit_the_size_budget() -> None:
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir())
    assert total <= 60 * 10**6
    assert sorted(p.suffix for p in WEIGHTS_DIR.iterdir()).count(".onnx") == 2


def test_shipped_ensemble_reproduces_its_recorded_test_figures(ferplus: Path) -> None:
    config = json.loads(SHIPPED_ENSEMBLE.read_text())
    recorded = config["metrics"]["ensemble"]["test"]
    test = load_labelled(ferplus, "test")
    ensemble = load_ensemble()
    report = evaluate_on_split(ensemble.predict_proba, test)
    assert report.n_images == recorded["n_images"] == 3_137
    assert round(report.accuracy, 4) == round(recorded["accuracy"], 4)
    assert round(report.macro_f1, 4) == round(recorded["macro_f1"], 4)
    for member in ensemble.members:  # each member against its own model card
        card = member.classifier.card
        figures = card["metrics"][member.classifier.variant]["test"]
        own = evaluate_on_split(member.classifier.predict_proba, test)
        assert own.n_images == figures["n_images"]
        assert round(own.accuracy, 4) == round(figures["accuracy"], 4), card["name"]


def test_evaluate_without_a_model_uses_the_shipped_ensemble(ferplus: Path) -> None:
    result = json.loads(run_cli("evaluate", "--data", str(ferplus), "--split", "valid", "--json").stdout)
    recorded = json.loads(SHIPPED_ENSEMBLE.read_text())["metrics"]["ensemble"]["valid"]
    assert result["n_images"] == 3_191
    assert round(result["accuracy"], 4) == round(recorded["accuracy"], 4)


def test_recognizer_loads_the_shipped_weights_with_no_argument() -> None:
    recognizer = EmotionRecognizer()
    faces = recognizer.predict(cv2.imread(str(SAMPLES / "grace_hopper.jpg")))
    assert len(faces) == 1 and faces[0].label in recognizer.classes
