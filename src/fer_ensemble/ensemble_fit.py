"""``fer-ensemble fit-ensemble``: calibrate and weight exported members on Valid, then package them.

Everything is chosen on FER+ Valid: each member's variant (int8 where it costs at most 0.2
points, else fp32), flip test-time augmentation (kept only if it helps the member on Valid), a
temperature per member (minimum NLL) and the soft-voting weights (maximum accuracy, NLL breaking
ties). Test is scored once, for the report written into ``ensemble.json``. Torch-free.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_ensemble.data import LabelledSplit, load_labelled
from fer_ensemble.metrics import evaluate_probabilities, negative_log_likelihood
from fer_ensemble.preprocess import prepare_batch
from fer_ensemble.runtime.classifier import OnnxClassifier, softmax
from fer_ensemble.runtime.ensemble import ENSEMBLE_FORMAT, calibrated_probabilities

INT8_TOLERANCE = 0.002  # int8 ships when it loses at most 0.2 points of Valid accuracy


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of least NLL on a log grid from 0.25 to 8."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 301))
    losses = [negative_log_likelihood(softmax(logits, t), labels) for t in grid]
    return float(grid[int(np.argmin(losses))])


def fit_weights(probabilities: list[np.ndarray], labels: np.ndarray, step: float = 0.02) -> list[float]:
    """Soft-voting weights on a simplex grid: best accuracy, then lowest NLL."""
    ticks = np.round(np.arange(0.0, 1.0 + 1e-9, step), 6)
    best_key, best = None, None
    for head in itertools.product(ticks, repeat=len(probabilities) - 1):
        last = 1.0 - sum(head)
        if last < -1e-9:
            continue
        weights = [*head, max(0.0, last)]
        mixed = sum(w * p for w, p in zip(weights, probabilities))
        accuracy = float((mixed.argmax(1) == labels).mean())
        loss = negative_log_likelihood(mixed, labels)
        key = (accuracy, -loss)
        if best_key is None or key > best_key:
            best_key, best = key, weights
    return [round(float(w), 4) for w in best]


@dataclass
class MemberOutputs:
    """A member's logits on one split, plain and mirrored."""

    logits: np.ndarray
    flipped: np.ndarray

    def probabilities(self, temperature: float, flip: bool) -> np.ndarray:
        return calibrated_probabilities(self.logits, self.flipped if flip else None, temperature)

    def tta_logits(self, flip: bool) -> np.ndarray:
        """Logits whose softmax approximates the flip average (for fitting the temperature)."""
        return 0.5 * (self.logits + self.flipped) if flip else self.logits


def member_outputs(classifier: OnnxClassifier, split: LabelledSplit, batch_size: int = 256) -> MemberOutputs:
    plain, mirrored = [], []
    for start in range(0, len(split), batch_size):
        batch = prepare_batch(split.images[start : start + batch_size], classifier.preprocessing)
        plain.append(classifier.logits(batch))
        mirrored.append(classifier.logits(np.ascontiguousarray(batch[..., ::-1])))
    return MemberOutputs(np.concatenate(plain), np.concatenate(mirrored))


def choose_variant(card_path: Path, requested: str) -> str:
    card = json.loads(card_path.read_text())
    if requested != "auto":
        return requested
    if "int8" not in card["files"]:
        return "fp32"
    fp32 = card["metrics"]["fp32"]["valid"]["accuracy"]
    int8 = card["metrics"]["int8"]["valid"]["accuracy"]
    return "int8" if int8 >= fp32 - INT8_TOLERANCE else "fp32"


def _report(probs: np.ndarray, labels: np.ndarray) -> dict:
    return evaluate_probabilities(probs, labels).to_dict()


def fit_ensemble(cards: list[Path], data: str | Path, out: Path, variant: str = "auto",
                 flip: str = "auto") -> dict:
    """Fit, report and package: ``out`` receives the chosen member files, their cards and ensemble.json."""
    valid, test = load_labelled(data, "valid"), load_labelled(data, "test")
    out.mkdir(parents=True, exist_ok=True)
    entries, member_reports, valid_probs, test_probs = [], {}, [], []
    for card_path in cards:
        chosen = choose_variant(card_path, variant)
        classifier = OnnxClassifier(card_path, chosen)
        outputs = {"valid": member_outputs(classifier, valid), "test": member_outputs(classifier, test)}
        plain_acc = (outputs["valid"].logits.argmax(1) == valid.labels).mean()
        flip_acc = (outputs["valid"].probabilities(1.0, True).argmax(1) == valid.labels).mean()
        use_flip = bool(flip == "on" or (flip == "auto" and flip_acc > plain_acc))
        temperature = fit_temperature(outputs["valid"].tta_logits(use_flip), valid.labels)
        valid_probs.append(outputs["valid"].probabilities(temperature, use_flip))
        test_probs.append(outputs["test"].probabilities(temperature, use_flip))
        raw_test = outputs["test"].probabilities(1.0, use_flip)
        member_reports[classifier.name] = {
            "variant": chosen,
            "flip_tta": use_flip,
            "valid_accuracy_plain": float(plain_acc),
            "valid_accuracy_flip": float(flip_acc),
            "temperature": temperature,
            "valid": _report(valid_probs[-1], valid.labels),
            "test": _report(test_probs[-1], test.labels),
            "test_ece_before_temperature": evaluate_probabilities(raw_test, test.labels).ece,
        }
        entries.append({"card": card_path.name, "variant": chosen, "temperature": temperature,
                        "flip_tta": use_flip})
        _package_member(card_path, chosen, out)
    weights = fit_weights(valid_probs, valid.labels)
    for entry, weight in zip(entries, weights):
        entry["weight"] = weight
    mixed_valid = sum(w * p for w, p in zip(weights, valid_probs))
    mixed_test = sum(w * p for w, p in zip(weights, test_probs))
    config = {
        "format": ENSEMBLE_FORMAT,
        "classes": json.loads(cards[0].read_text())["classes"],
        "members": entries,
        "fitted_on": "FER+ Valid (majority protocol); Test scored once for this report",
        "metrics": {
            "members": member_reports,
            "ensemble": {"valid": _report(mixed_valid, valid.labels), "test": _report(mixed_test, test.labels)},
        },
    }
    (out / "ensemble.json").write_text(json.dumps(config, indent=2))
    return config


def _package_member(card_path: Path, variant: str, out: Path) -> None:
    """Copy one variant's ONNX file and a card that names only that file."""
    card = json.loads(card_path.read_text())
    name = card["files"][variant]
    if card_path.parent.resolve() != out.resolve():
        shutil.copyfile(card_path.parent / name, out / name)
    card["files"] = {variant: name}
    card["default_variant"] = variant
    (out / card_path.name).write_text(json.dumps(card, indent=2))


def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("cards", nargs="+", help="model cards (.json) of the exported members")
    parser.add_argument("--data", required=True, help="FER+ folder")
    parser.add_argument("--out", required=True, help="folder for the packaged ensemble")
    parser.add_argument("--variant", choices=("auto", "fp32", "int8"), default="auto")
    parser.add_argument("--flip", choices=("auto", "on", "off"), default="auto")
    return parser


def run_fit(args: argparse.Namespace) -> int:
    config = fit_ensemble([Path(c) for c in args.cards], args.data, Path(args.out), args.variant, args.flip)
    rows = [(name, m["variant"], m["temperature"], m["test"]["accuracy"])
            for name, m in config["metrics"]["members"].items()]
    for (name, variant, temperature, accuracy), entry in zip(rows, config["members"]):
        print(f"{name:<14} {variant:<5} T={temperature:.2f} weight={entry['weight']:.2f} "
              f"flip={entry['flip_tta']} test acc {accuracy:.4f}")
    ensemble = config["metrics"]["ensemble"]
    print(f"{'ensemble':<14} valid acc {ensemble['valid']['accuracy']:.4f}  "
          f"test acc {ensemble['test']['accuracy']:.4f}  -> {Path(args.out) / 'ensemble.json'}")
    return 0
