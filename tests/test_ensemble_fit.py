"""Ensemble fitting on Valid: temperature, weights, variant choice, packaging, exact re-evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_TRAIN, run_cli
from fer_ensemble.ensemble_fit import fit_temperature, fit_weights
from fer_ensemble.runtime.classifier import softmax


def test_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    calibrated = rng.normal(size=(4000, 8))
    labels = np.array([rng.choice(8, p=p) for p in softmax(calibrated)])
    assert fit_temperature(3.0 * calibrated, labels) == pytest.approx(3.0, rel=0.1)


def test_weights_favour_the_informative_member() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, 2000)
    good = np.full((2000, 8), 0.05)
    good[np.arange(2000), labels] = 0.65
    noise = softmax(rng.normal(size=(2000, 8)))
    weights = fit_weights([noise, good], labels)
    assert sum(weights) == pytest.approx(1.0) and weights[1] > 0.5


@pytest.fixture(scope="module")
def two_members(tiny_run: Path, ferplus: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny MobileNetV2 run and a 1-epoch tiny ResNet50 run, both exported with int8."""
    folder = tmp_path_factory.mktemp("members")
    resnet_run = folder / "resnet-run"
    run_cli("train", *TINY_TRAIN, "--model", "resnet50", "--data", str(ferplus), "--out", str(resnet_run),
            "--epochs", "1")
    for run in (tiny_run, resnet_run):
        run_cli("export", str(run), "--out", str(folder / "exported"), "--data", str(ferplus), "--int8",
                "--calibration-images", "128")
    return [folder / "exported" / "mobilenet_v2.json", folder / "exported" / "resnet50.json"]


def test_fit_package_and_reevaluate_exactly(two_members: list[Path], ferplus: Path, tmp_path: Path) -> None:
    out = tmp_path / "packaged"
    printed = run_cli("fit-ensemble", *map(str, two_members), "--data", str(ferplus), "--out", str(out)).stdout
    assert "ensemble" in printed
    config = json.loads((out / "ensemble.json").read_text())
    assert [m["card"] for m in config["members"]] == ["mobilenet_v2.json", "resnet50.json"]
    assert sum(m["weight"] for m in config["members"]) == pytest.approx(1.0, abs=1e-3)
    for entry in config["members"]:
        card = json.loads((out / entry["card"]).read_text())
        assert list(card["files"]) == [entry["variant"]]  # only the shipped variant is packaged
        assert (out / card["files"][entry["variant"]]).is_file()
        source = json.loads((two_members[0].parent / entry["card"]).read_text())["metrics"]
        int8_ok = source["int8"]["valid"]["accuracy"] >= source["fp32"]["valid"]["accuracy"] - 0.002
        assert entry["variant"] == ("int8" if int8_ok else "fp32")
        assert entry["temperature"] > 0
    report = config["metrics"]["ensemble"]["test"]
    assert report["n_images"] == 3_137

    # the packaged ensemble, loaded the way users load it, reproduces the recorded figures exactly
    evaluated = json.loads(run_cli("evaluate", str(out / "ensemble.json"), "--data", str(ferplus),
                                   "--json").stdout)
    assert evaluated["n_images"] == report["n_images"]
    assert round(evaluated["accuracy"], 4) == round(report["accuracy"], 4)
    assert evaluated["confusion"] == report["confusion"]
