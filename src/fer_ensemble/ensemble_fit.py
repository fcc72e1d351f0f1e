"""Calibrate and weight exported members on Valid, then package them.

Everything is chosen on FER+ Valid, within a latency budget measured on this machine:

- per member, a variant (fp32 or int8) and flip test-time augmentation on or off. Each option's
  cost is *measured* (one face at batch 1 on one thread, preprocessing and the mirrored pass
  included); among the combinations whose total fits ``--max-ms-per-face``, the fastest whose
  fitted ensemble is within 0.1 points of the best Valid accuracy wins.
- a temperature per member (minimum NLL) and the soft-voting weights (maximum accuracy, NLL
  breaking ties);
- the default class prior strength (``fer_ensemble.prior``): the one of best Valid macro recall.

Test is scored once, for the report written into ``ensemble.json``. Torch-free.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_ensemble.data import LabelledSplit, load_labelled
from fer_ensemble.errors import UserError, json_text
from fer_ensemble.metrics import evaluate_probabilities, negative_log_likelihood
from fer_ensemble.outputs import write_whole, written_whole
from fer_ensemble.preprocess import prepare_batch
from fer_ensemble.prior import adjust_probabilities, parse_strength
from fer_ensemble.runtime.calibration import resting_spread
from fer_ensemble.runtime.classifier import OnnxClassifier, read_card, softmax
from fer_ensemble.runtime.ensemble import (
    EnsembleSpec,
    Member,
    MemberSpec,
    calibrated_probabilities,
    member_probabilities,
)

DEFAULT_MAX_MS_PER_FACE = 8.0
"""``--max-ms-per-face``: the webcam loop's budget for classification, milliseconds for all members
on one face (>= 60 fps with one face)."""
ACCURACY_TOLERANCE = 0.001
"""Valid accuracy within which the faster combination wins (0.1 points: 3 of FER+ Valid's 3,191
images)."""


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of least NLL on a log grid from 0.25 to 8."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 301))
    losses = [negative_log_likelihood(softmax(logits, t), labels) for t in grid]
    return float(grid[int(np.argmin(losses))])


def _soft_vote(weights: Sequence[float], probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """``sum(w * p)`` over the members' (N, C) probabilities, as an array whatever the count."""
    mixed = weights[0] * probabilities[0]
    for w, p in zip(weights[1:], probabilities[1:]):
        mixed = mixed + w * p
    return mixed


def fit_weights(probabilities: list[np.ndarray], labels: np.ndarray, step: float = 0.02) -> list[float]:
    """Soft-voting weights on a simplex grid: best accuracy, then lowest NLL."""
    ticks = np.round(np.arange(0.0, 1.0 + 1e-9, step), 6)
    best_key, best = None, None
    for head in itertools.product(ticks, repeat=len(probabilities) - 1):
        last = 1.0 - sum(head)
        if last < -1e-9:
            continue
        weights = [*head, max(0.0, last)]
        mixed = _soft_vote(weights, probabilities)
        accuracy = float((mixed.argmax(1) == labels).mean())
        loss = negative_log_likelihood(mixed, labels)
        key = (accuracy, -loss)
        if best_key is None or key > best_key:
            best_key, best = key, weights
    assert best is not None  # the grid always holds a corner of the simplex
    return [round(float(w), 4) for w in best]


@dataclass
class MemberOutputs:
    """A member's logits on one split, plain and mirrored."""

    logits: np.ndarray
    flipped: np.ndarray

    def probabilities(self, temperature: float, flip: bool) -> np.ndarray:
        """(N, C) float32 probabilities at ``temperature``, averaged with the mirrored pass when ``flip``."""
        return calibrated_probabilities(self.logits, self.flipped if flip else None, temperature)

    def tta_logits(self, flip: bool) -> np.ndarray:
        """Logits whose softmax approximates the flip average (for fitting the temperature)."""
        return 0.5 * (self.logits + self.flipped) if flip else self.logits


def member_outputs(classifier: OnnxClassifier, split: LabelledSplit, batch_size: int = 256) -> MemberOutputs:
    """``classifier``'s (N, C) logits on every image of ``split``, as given and mirrored, in batches."""
    plain, mirrored = [], []
    for start in range(0, len(split), batch_size):
        batch = prepare_batch(split.images[start : start + batch_size], classifier.preprocessing)
        plain.append(classifier.logits(batch))
        mirrored.append(classifier.logits(np.ascontiguousarray(batch[..., ::-1])))
    return MemberOutputs(np.concatenate(plain), np.concatenate(mirrored))


def measure_ms_per_face(classifier: OnnxClassifier, face: np.ndarray, flip: bool, repeat: int = 60) -> float:
    """Median milliseconds for one face at batch 1: preprocessing, the pass and the mirrored one."""
    member = Member(classifier, flip_tta=flip)
    member_probabilities(member, [face])  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        member_probabilities(member, [face])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


@dataclass
class MemberOption:
    """One way to run a member: its variant and flip, what it costs and its calibrated outputs."""

    card: Path
    name: str
    variant: str
    flip: bool
    ms_per_face: float
    temperature: float
    valid_probs: np.ndarray
    test_probs: np.ndarray
    test_ece_before_temperature: float


def member_options(card_path: Path, valid: LabelledSplit, test: LabelledSplit, variants: list[str],
                   flips: list[bool], face: np.ndarray) -> list[MemberOption]:
    """One ``MemberOption`` per variant and flip setting of the member ``card_path``: its outputs on
    Valid and Test and its measured milliseconds on ``face`` (one face at batch 1, one thread)."""
    options = []
    for variant in variants:
        classifier = OnnxClassifier(card_path, variant)
        timed = OnnxClassifier(card_path, variant, threads=1)
        outputs = {"valid": member_outputs(classifier, valid), "test": member_outputs(classifier, test)}
        for flip in flips:
            temperature = fit_temperature(outputs["valid"].tta_logits(flip), valid.labels)
            valid_probs = outputs["valid"].probabilities(temperature, flip)
            options.append(MemberOption(
                card_path, classifier.name, variant, flip, measure_ms_per_face(timed, face, flip),
                temperature, valid_probs, outputs["test"].probabilities(temperature, flip),
                evaluate_probabilities(outputs["test"].probabilities(1.0, flip), test.labels).ece))
    return options


def choose_combination(options: list[list[MemberOption]], labels: np.ndarray, max_ms: float | None,
                       tolerance: float = ACCURACY_TOLERANCE,
                       ) -> tuple[tuple[MemberOption, ...], list[float], list[dict]]:
    """One option per member: within the budget, the fastest combination whose fitted ensemble is
    within ``tolerance`` of the best Valid accuracy (a few images are noise, milliseconds are not)."""
    considered: list[dict[str, Any]] = []
    fitted = []
    for combination in itertools.product(*options):
        ms = sum(o.ms_per_face for o in combination)
        row = {"members": {o.name: {"variant": o.variant, "flip_tta": o.flip, "ms_per_face": round(o.ms_per_face, 3)}
                           for o in combination}, "ms_per_face": round(ms, 3)}
        if max_ms is not None and ms > max_ms:
            considered.append({**row, "within_budget": False})
            continue
        weights = fit_weights([o.valid_probs for o in combination], labels)
        mixed = _soft_vote(weights, [o.valid_probs for o in combination])
        accuracy = float((mixed.argmax(1) == labels).mean())
        considered.append({**row, "within_budget": True, "valid_accuracy": accuracy})
        fitted.append((accuracy, ms, combination, weights))
    if not fitted:
        cheapest = min(r["ms_per_face"] for r in considered)
        raise UserError(f"no combination of variants fits {max_ms} ms per face (cheapest: {cheapest:.2f} ms)")
    best = max(accuracy for accuracy, *_ in fitted)
    _, _, combination, weights = min((f for f in fitted if f[0] >= best - tolerance),
                                     key=lambda f: (f[1], -f[0]))
    return combination, weights, considered


def choose_prior_strength(probabilities: np.ndarray, labels: np.ndarray, prior: list[float],
                          step: float = 0.05) -> float:
    """The strength of best Valid macro recall (the smaller one on a tie)."""
    grid = np.round(np.arange(0.0, 1.0 + 1e-9, step), 4)
    recalls = [evaluate_probabilities(adjust_probabilities(probabilities, prior, s), labels).macro_recall
               for s in grid]
    return float(grid[int(np.argmax(recalls))])


def _report(probs: np.ndarray, labels: np.ndarray) -> dict:
    return evaluate_probabilities(probs, labels).to_dict()


def fit_ensemble(cards: list[Path], data: str | Path, out: Path, variant: str = "auto", flip: str = "auto",
                 max_ms_per_face: float | None = DEFAULT_MAX_MS_PER_FACE, prior: str = "auto") -> dict:
    """Fit, report and package: ``out`` receives the chosen member files, their cards and ensemble.json."""
    valid, test = load_labelled(data, "valid"), load_labelled(data, "test")
    out.mkdir(parents=True, exist_ok=True)
    face = cv2.resize(valid.images[0], (160, 160), interpolation=cv2.INTER_LINEAR)  # a webcam-sized crop
    options = []
    first = read_card(cards[0])
    for card_path in cards:
        files = read_card(card_path)["files"]
        variants = [v for v in ("fp32", "int8") if v in files] if variant == "auto" else [variant]
        if variant != "auto" and variant not in files:
            raise UserError(f"{card_path.name} has no {variant} file")
        flips = {"auto": [False, True], "on": [True], "off": [False]}[flip]
        options.append(member_options(card_path, valid, test, variants, flips, face))
    chosen, weights, considered = choose_combination(options, valid.labels, max_ms_per_face)

    mixed_valid = _soft_vote(weights, [o.valid_probs for o in chosen])
    mixed_test = _soft_vote(weights, [o.test_probs for o in chosen])
    class_prior = first.get("class_prior")
    if prior == "auto":
        strength = choose_prior_strength(mixed_valid, valid.labels, class_prior) if class_prior else 0.0
    else:
        strength = parse_strength(prior)
    entries, member_reports = [], {}
    for option, weight in zip(chosen, weights):
        entries.append(MemberSpec(option.card.name, option.variant, option.temperature, weight, option.flip))
        member_reports[option.name] = {
            "variant": option.variant,
            "flip_tta": option.flip,
            "ms_per_face": round(option.ms_per_face, 3),
            "temperature": option.temperature,
            "valid": _report(option.valid_probs, valid.labels),
            "test": _report(option.test_probs, test.labels),
            "test_ece_before_temperature": option.test_ece_before_temperature,
        }
        _package_member(option.card, option.variant, out)
    splits = {"valid": (mixed_valid, valid.labels), "test": (mixed_test, test.labels)}
    adjusted = {name: _report(adjust_probabilities(p, class_prior, strength), labels)
                for name, (p, labels) in splits.items()}
    info = {
        "fitted_on": "FER+ Valid (majority protocol); Test scored once for this report",
        "latency": {"max_ms_per_face": max_ms_per_face, "measured": "one face at batch 1, one thread",
                    "ms_per_face": round(sum(o.ms_per_face for o in chosen), 3),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores", "considered": considered},
        "metrics": {
            "members": member_reports,
            # under FER+'s own prior (strength 0): the FER+ benchmark figure
            "ensemble": {"valid": _report(mixed_valid, valid.labels), "test": _report(mixed_test, test.labels)},
            # under the default prior the apps use
            "ensemble_default_prior": {"strength": strength, **adjusted},
        },
    }
    spec = EnsembleSpec(members=tuple(entries), classes=tuple(first["classes"]),
                        class_prior=None if class_prior is None else tuple(class_prior), prior_strength=strength,
                        resting_spread=np.round(resting_spread(mixed_valid[valid.labels == 0]), 6),
                        resting_measured_on="FER+ Valid's neutral faces (majority protocol)", info=info)
    config = spec.to_dict()
    EnsembleSpec.from_dict(config, str(out / "ensemble.json"))  # what a reader will check, checked before writing
    write_whole(out / "ensemble.json", json_text(config, indent=2))
    return config


def _package_member(card_path: Path, variant: str, out: Path) -> None:
    """Copy one variant's ONNX file and a card that names only that file."""
    card = read_card(card_path)
    name = card["files"][variant]
    if card_path.parent.resolve() != out.resolve():
        written_whole(out / name, lambda partial: shutil.copyfile(card_path.parent / name, partial))
    card["files"] = {variant: name}
    card["default_variant"] = variant
    write_whole(out / card_path.name, json_text(card, indent=2))

