"""Ensemble fitting on Valid: temperature, weights, variant choice, packaging, exact re-evaluation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from support import TINY_TRAIN, run_cli

from fer_ensemble.ensemble_fit import (
    MemberOption,
    choose_combination,
    choose_prior_strength,
    fit_temperature,
    fit_weights,
)
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


def option(name: str, variant: str, ms: float, probs: np.ndarray) -> MemberOption:
    return MemberOption(Path(f"{name}.json"), name, variant, False, ms, 1.0, probs, probs, 0.0)


def test_the_latency_budget_rules_out_the_more_accurate_slow_variant() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 8, 1000)
    sharp = np.full((1000, 8), 0.02)
    sharp[np.arange(1000), labels] = 0.86
    blunt = 0.5 * sharp + 0.5 * softmax(rng.normal(size=(1000, 8)) * 3)
    options = [[option("big", "fp32", 16.0, sharp), option("big", "int8", 4.5, blunt)],
               [option("small", "fp32", 1.5, blunt)]]
    chosen, _, considered = choose_combination(options, labels, max_ms=8.0)
    assert [o.variant for o in chosen] == ["int8", "fp32"]
    assert [r["within_budget"] for r in considered] == [False, True]
    chosen, _, _ = choose_combination(options, labels, max_ms=None)
    assert chosen[0].variant == "fp32"
    with pytest.raises(ValueError, match="no combination"):
        choose_combination(options, labels, max_ms=1.0)


def test_default_prior_strength_is_the_one_of_best_valid_macro_recall() -> None:
    prior = np.array([0.5, 0.3, 0.1, 0.04, 0.03, 0.01, 0.01, 0.01])
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(8), 50)  # balanced labels, a model leaning towards the prior
    logits = rng.normal(size=(400, 8))
    logits[np.arange(400), labels] += 1.5
    probs = softmax(logits + np.log(prior))
    assert choose_prior_strength(probs, labels, prior.tolist()) >= 0.8
    assert choose_prior_strength(softmax(logits), labels, prior.tolist()) <= 0.2


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
    printed = run_cli("fit-ensemble", *map(str, two_members), "--data", str(ferplus), "--out", str(out),
                      "--max-ms-per-face", "50").stdout
    assert "ensemble" in printed and "ms/face" in printed
    config = json.loads((out / "ensemble.json").read_text())
    assert [m["card"] for m in config["members"]] == ["mobilenet_v2.json", "resnet50.json"]
    assert sum(m["weight"] for m in config["members"]) == pytest.approx(1.0, abs=1e-3)
    for entry in config["members"]:
        card = json.loads((out / entry["card"]).read_text())
        assert list(card["files"]) == [entry["variant"]]  # only the shipped variant is packaged
        assert (out / card["files"][entry["variant"]]).is_file()
        assert entry["temperature"] > 0
    assert len(config["latency"]["considered"]) == 16  # 2 variants x 2 flips, per member
    assert 0 < config["latency"]["ms_per_face"] <= 50
    assert 0.0 <= config["prior"]["strength"] <= 1.0 and len(config["prior"]["class_prior"]) == 8
    report = config["metrics"]["ensemble"]["test"]
    assert report["n_images"] == 3_137

    # the packaged ensemble, loaded the way users load it, reproduces the recorded figures exactly
    evaluated = json.loads(run_cli("evaluate", str(out / "ensemble.json"), "--data", str(ferplus),
                                   "--prior", "ferplus", "--json").stdout)
    assert evaluated["n_images"] == report["n_images"]
    assert round(evaluated["accuracy"], 4) == round(report["accuracy"], 4)
    assert evaluated["confusion"] == report["confusion"]

    # under its default prior, as the apps run it, it reproduces the other recorded figures
    default = config["metrics"]["ensemble_default_prior"]["test"]
    evaluated = json.loads(run_cli("evaluate", str(out / "ensemble.json"), "--data", str(ferplus),
                                   "--json").stdout)
    assert evaluated["confusion"] == default["confusion"]


def test_a_budget_no_combination_fits_is_one_line() -> None:
    """fit-ensemble's refusal (a UserError: one line and exit 2 in the command line), without
    scoring real members: the budget is read from each option's measured milliseconds."""
    from fer_ensemble.ensemble_fit import MemberOption, choose_combination
    from fer_ensemble.errors import UserError

    probabilities = np.full((4, 8), 1 / 8)

    def option(name: str, ms: float) -> MemberOption:
        return MemberOption(Path(f"{name}.json"), name, "int8", False, ms, 1.0, probabilities, probabilities, 0.0)

    with pytest.raises(UserError, match=re.escape("no combination of variants fits 4.0 ms per face (cheapest: 5.00 ms)")):
        choose_combination([[option("a", 2.0)], [option("b", 3.0)]], np.zeros(4, int), 4.0)
    chosen, weights, considered = choose_combination([[option("a", 2.0)], [option("b", 3.0)]], np.zeros(4, int), 5.0)
    assert [o.name for o in chosen] == ["a", "b"] and considered[0]["within_budget"]
