"""Soft voting over exported members, as an ensemble file describes it (torch-free).

``ensemble.json``::

    {"format": "fer-ensemble/ensemble/v1",
     "classes": [...8 emotions...],
     "members": [{"card": "resnet50.json", "variant": "int8", "temperature": 1.2, "weight": 0.6,
                  "flip_tta": true},
                 {"card": "mobilenet_v2.json", "variant": "fp32", "temperature": 1.1, "weight": 0.4}],
     "prior": {"class_prior": [...8 training class frequencies...], "strength": 1.0}}

Each member sees all faces of a frame as one batch at its own input size; its logits are divided
by its temperature, turned into probabilities (averaged with the mirrored faces' when the
member's ``flip_tta`` is set), and the members' probabilities are mixed with the weights. Last,
``prior_strength`` of FER+'s class prior is divided out (``fer_ensemble.prior``): 0 answers
under FER+'s own prior, 1 under equal priors; the ensemble file holds the fitted default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_ensemble.errors import UserError, read_json_object
from fer_ensemble.preprocess import prepare_batch
from fer_ensemble.prior import adjust_probabilities, parse_strength
from fer_ensemble.runtime.classifier import OnnxClassifier, resolve_member, softmax

ENSEMBLE_FORMAT = "fer-ensemble/ensemble/v1"


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
    config = read_json_object(path, "ensemble file", ("members",))
    if not isinstance(config["members"], list) or not all(
        isinstance(entry, dict) and "card" in entry for entry in config["members"]
    ):
        raise UserError(f"{path}: not an ensemble file ('members' must list objects with a 'card')")
    if not config["members"]:
        raise UserError(f"{path}: an ensemble needs at least one member")
    return config


def check_ensemble_file(path: str | Path) -> None:
    """Everything ``Ensemble.load`` reads, checked without loading a model (UserError otherwise)."""
    path = Path(path)
    for entry in read_config(path)["members"]:
        resolve_member(path.parent / entry["card"], entry.get("variant"))


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
        members = [
            Member(
                OnnxClassifier(path.parent / entry["card"], entry.get("variant"), threads=threads),
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

    def predict_proba(self, faces, batch_size: int = 256, prior: str | float | None = None) -> np.ndarray:
        """Ensemble probabilities (N, 8) for face crops (gray or BGR uint8, any size), under the
        class prior ``prior`` names (None: the ensemble file's default)."""
        strength = self.prior_strength(prior)
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        chunks = []
        total_weight = sum(m.weight for m in self.members)
        for start in range(0, len(faces), batch_size):
            part = faces[start : start + batch_size]
            mixed = sum(m.weight * member_probabilities(m, part) for m in self.members) / total_weight
            mixed = adjust_probabilities(mixed, self.class_prior, strength)
            chunks.append(mixed.astype(np.float32))
        return np.concatenate(chunks)
