"""Soft voting over exported members, as an ensemble file describes it (torch-free).

``ensemble.json``::

    {"format": "fer-ensemble/ensemble/v1",
     "classes": [...8 emotions...],
     "members": [{"card": "resnet50.json", "variant": "int8", "temperature": 1.2, "weight": 0.6,
                  "flip_tta": true},
                 {"card": "mobilenet_v2.json", "variant": "fp32", "temperature": 1.1, "weight": 0.4}],
     "prior": {"class_prior": [...8 training class frequencies...], "strength": 1.0},
     "calibration": {...},   (optional: fer_ensemble.runtime.calibration.Calibration, as adapt writes it)
     "resting_face": {"spread": [...8...]}}   (optional: resting_spread of FER+ Valid's neutral faces)

``"weights": "shipped"`` makes the cards relative to the package's weights folder instead of the
file's own folder (what ``adapt`` writes on top of the shipped ensemble, so the file keeps working
wherever it is moved).

Each member sees all faces of a frame as one batch at its own input size; its logits are divided
by its temperature, turned into probabilities (averaged with the mirrored faces' when the
member's ``flip_tta`` is set), and the members' probabilities are mixed with the weights. Then the
file's calibration, if any, and a person's resting face, if one is given, are applied (both keep
the answer under FER+'s prior; ``fer_ensemble.runtime.calibration``). Last,
``prior_strength`` of FER+'s class prior is divided out (``fer_ensemble.prior``): 0 answers
under FER+'s own prior, 1 under equal priors; the ensemble file holds the fitted default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import ENSEMBLE_FORMAT, UserError, read_json_object
from fer_ensemble.preprocess import prepare_batch
from fer_ensemble.prior import adjust_probabilities, parse_strength
from fer_ensemble.runtime.calibration import Calibration, RestingFace
from fer_ensemble.runtime.classifier import OnnxClassifier, resolve_member, softmax

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
"""The package's weights folder: the shipped ensemble, its members, BlazeFace and the calibration presets."""
CALIBRATION_PRESETS = {"posed": WEIGHTS_DIR / "calibration-posed.json"}
"""Named calibrations shipped in the package (``--calibration NAME``); docs/accuracy.md says how each was fitted."""


@dataclass
class Member:
    classifier: OnnxClassifier
    temperature: float = 1.0
    weight: float = 1.0
    flip_tta: bool = False


def calibrated_probabilities(logits: np.ndarray, mirrored_logits: np.ndarray | None,
                             temperature: float) -> np.ndarray:
    """Temperature-scaled softmax, averaged with the mirrored faces' when those are given.
    ``fit-ensemble`` fits with this very formula, so the shipped figures reproduce exactly."""
    probs = softmax(logits, temperature)
    if mirrored_logits is not None:
        probs = 0.5 * (probs + softmax(mirrored_logits, temperature))
    return probs


def member_probabilities(member: Member, faces) -> np.ndarray:
    """One member's calibrated probabilities for a list of face crops."""
    batch = prepare_batch(faces, member.classifier.preprocessing)
    mirrored = None
    if member.flip_tta:
        mirrored = member.classifier.logits(np.ascontiguousarray(batch[..., ::-1]))
    return calibrated_probabilities(member.classifier.logits(batch), mirrored, member.temperature)


def read_config(path: Path) -> dict:
    """An ensemble file's contents, its structure checked (UserError otherwise)."""
    config = read_json_object(path, "ensemble file", ("members",), ENSEMBLE_FORMAT)
    if not isinstance(config["members"], list) or not all(
        isinstance(entry, dict) and "card" in entry for entry in config["members"]
    ):
        raise UserError(f"{path}: not an ensemble file ('members' must list objects with a 'card')")
    if not config["members"]:
        raise UserError(f"{path}: an ensemble needs at least one member")
    return config


def cards_folder(path: Path, config: dict) -> Path:
    """Where an ensemble file's member cards are: its own folder, or the package's weights."""
    return WEIGHTS_DIR if config.get("weights") == "shipped" else path.parent


def check_ensemble_file(path: str | Path) -> None:
    """Everything ``Ensemble.load`` reads, checked without loading a model (UserError otherwise)."""
    path = Path(path)
    config = read_config(path)
    for entry in config["members"]:
        resolve_member(cards_folder(path, config) / entry["card"], entry.get("variant"))
    if "calibration" in config:
        Calibration.from_dict(config["calibration"], str(path))
    read_resting_spread(config, len(config.get("classes", EMOTIONS)), str(path))


def read_resting_spread(config: dict, n_classes: int, source: str) -> np.ndarray | None:
    """The ensemble file's ``resting_face.spread``: (C,) positive float64, or None where it records
    none; UserError naming ``source`` for a damaged one."""
    entry = config.get("resting_face")
    if entry is None:
        return None
    try:
        spread = np.asarray(entry["spread"], np.float64)
    except (KeyError, TypeError, ValueError):
        spread = None
    if spread is None or spread.shape != (n_classes,) or not (spread > 0).all():
        raise UserError(f"{source}: a damaged resting_face entry (expected a spread of {n_classes} positive numbers)")
    return spread


def load_calibration(value: str | Path) -> Calibration | None:
    """The calibration ``value`` names: ``none`` (None), a preset of ``CALIBRATION_PRESETS``, a
    calibration file, or an ensemble file holding one (what ``adapt`` writes). UserError otherwise."""
    if str(value) == "none":
        return None
    path = CALIBRATION_PRESETS.get(str(value), Path(value))
    if str(value) not in CALIBRATION_PRESETS and not path.is_file():
        raise UserError(f"no calibration {value!r}: give none, {', '.join(CALIBRATION_PRESETS)} or a file "
                        "that adapt wrote")
    data = read_json_object(path, "calibration file")
    if "members" in data:
        if "calibration" not in data:
            raise UserError(f"{path}: an ensemble file without a calibration")
        data = data["calibration"]
    return Calibration.from_dict(data, str(path))


class Ensemble:
    """Calibrated soft voting of exported members, then the chosen class prior."""

    def __init__(self, members: list[Member], config: dict | None = None):
        if not members:
            raise UserError("an ensemble needs at least one member")
        classes = {m.classifier.classes for m in members}
        if len(classes) != 1:
            raise UserError("members disagree on the classes")
        self.members = members
        self.classes: tuple[str, ...] = classes.pop()
        self.config = config or {}
        prior = self.config.get("prior", {})
        cards = [m.classifier.class_prior for m in members if m.classifier.class_prior is not None]
        self.class_prior: list[float] | None = prior.get("class_prior") or (cards[0] if cards else None)
        self.default_prior_strength = float(prior.get("strength", 0.0))
        self.calibration: Calibration | None = (
            Calibration.from_dict(self.config["calibration"], "ensemble file")
            if "calibration" in self.config else None)
        self.resting_spread = read_resting_spread(self.config, len(self.classes), "ensemble file")

    def prior_strength(self, value: str | float | None = None) -> float:
        """The strength ``value`` names (``ferplus``, ``uniform`` or a number in [0, 1]); None
        gives the ensemble file's default. ValueError for a value out of range."""
        strength = self.default_prior_strength if value is None else parse_strength(value)
        if strength and self.class_prior is None:
            raise UserError("this ensemble's cards record no class prior to adjust")
        return strength

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> Ensemble:
        """Read an ensemble file; member cards are found relative to it."""
        path = Path(path)
        config = read_config(path)
        if "calibration" in config:  # a damaged one fails before any model is loaded
            Calibration.from_dict(config["calibration"], str(path))
        read_resting_spread(config, len(config.get("classes", EMOTIONS)), str(path))
        folder = cards_folder(path, config)
        members = [
            Member(
                OnnxClassifier(folder / entry["card"], entry.get("variant"), threads=threads),
                float(entry.get("temperature", 1.0)),
                float(entry.get("weight", 1.0)),
                bool(entry.get("flip_tta", config.get("flip_tta", False))),
            )
            for entry in config["members"]
        ]
        return cls(members, config)

    @property
    def name(self) -> str:
        return "ensemble(" + "+".join(m.classifier.name for m in self.members) + ")"

    def native_probabilities(self, faces, batch_size: int = 256) -> np.ndarray:
        """(N, 8) float32 probabilities under FER+'s prior for face crops (gray or BGR uint8, any
        size): the members' soft vote, then the calibration if the ensemble has one."""
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        chunks = []
        total_weight = sum(m.weight for m in self.members)
        for start in range(0, len(faces), batch_size):
            part = faces[start : start + batch_size]
            chunks.append(sum(m.weight * member_probabilities(m, part) for m in self.members) / total_weight)
        mixed = np.concatenate(chunks)
        return (mixed if self.calibration is None else self.calibration.apply(mixed)).astype(np.float32)

    def answer(self, native: np.ndarray, prior: str | float | None = None,
               resting_face: RestingFace | None = None) -> np.ndarray:
        """The answer for (N, 8) ``native_probabilities``: read relative to ``resting_face`` when
        given, then under the class prior ``prior`` names (None: the ensemble file's default)."""
        strength = self.prior_strength(prior)
        if resting_face is not None:
            native = resting_face.apply(native)
        return adjust_probabilities(native, self.class_prior, strength).astype(np.float32)

    def resting_face(self, native: np.ndarray, **options) -> RestingFace:
        """A person's resting face from the (N, 8) ``native_probabilities`` of their neutral
        face(s); ``options`` go to ``RestingFace`` (method and its parameters). ValueError for no
        faces. The spread is the ensemble file's ``resting_face.spread`` (what ``fit-ensemble``
        measured on FER+ Valid's neutral faces), if it records one. Without a recorded class prior,
        equal priors stand in (the answers are then under them)."""
        prior = self.class_prior if self.class_prior is not None else np.full(len(self.classes), 1 / len(self.classes))
        options.setdefault("spread", self.resting_spread)
        return RestingFace.from_probabilities(native, prior, **options)

    def predict_proba(self, faces, batch_size: int = 256, prior: str | float | None = None,
                      resting_face: RestingFace | None = None) -> np.ndarray:
        """Ensemble probabilities (N, 8) float32 for face crops (gray or BGR uint8, any size), under
        the class prior ``prior`` names (None: the ensemble file's default), relative to
        ``resting_face`` when given."""
        self.prior_strength(prior)  # a bad value fails before any work
        return self.answer(self.native_probabilities(faces, batch_size), prior, resting_face)
