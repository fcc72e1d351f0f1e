"""A person's profile: their own expressions, learnt from a few labelled faces of theirs, read
through the members' embeddings (torch-free).

``Profile.from_embeddings(embeddings, labels)`` keeps one prototype per enrolled class: the mean of
that class's unit embeddings (``Ensemble.read_faces``), made unit again. ``blend`` then reads a
later face of the same person: among the enrolled classes the answer becomes
``softmax(weight * log p_ensemble + cos(face, prototype) / temperature)``, scaled to the
probability mass the ensemble gave those classes, so a class the person did not enrol keeps the
ensemble's answer. It works on the ensemble's answer (after any calibration and resting face, under
the prior strength asked for), so calibrations, resting faces and profiles compose in that order.

A profile holds face embeddings, which are personal data: it is written only where its owner says,
and it is for reading that person's expressions, never for identifying anyone (docs/model-card.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import UserError, json_text

PROFILE_FORMAT = "fer-ensemble/profile/v1"
"""The ``format`` a profile file records; another one is refused."""
PROFILE_WEIGHT = 0.5
"""The ensemble's log-probabilities' weight beside the prototypes (``blend``); chosen by
``scripts/profile_study.py`` on taiwan-posed (docs/accuracy.md, "Personal profiles")."""
PROFILE_TEMPERATURE = 0.05
"""The cosine similarities' temperature (``blend``); chosen with ``PROFILE_WEIGHT``."""


class ProfileError(UserError):
    """A profile file that cannot be used (missing, damaged, another format, another ensemble's)."""


@dataclass
class Profile:
    """One person's expressions: ``prototypes`` (K, D) float32 unit rows for the enrolled class
    indices ``enrolled`` (K,) (into ``EMOTIONS``), each the mean of ``counts`` faces; ``weight``
    and ``temperature`` of ``blend``; ``members``: the ensemble members' names whose embeddings
    these are (a profile is read only by the ensemble that made it); ``self_check``: what enrolment
    measured (per class, faces left out in turn), for the owner to see."""

    prototypes: np.ndarray
    enrolled: np.ndarray
    counts: np.ndarray
    weight: float = PROFILE_WEIGHT
    temperature: float = PROFILE_TEMPERATURE
    members: tuple[str, ...] = ()
    self_check: dict = field(default_factory=dict)

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, labels, weight: float = PROFILE_WEIGHT,
                        temperature: float = PROFILE_TEMPERATURE, members: tuple[str, ...] = ()) -> Profile:
        """A profile from (N, D) embeddings of one person's faces and their N class indices (into
        ``EMOTIONS``). ValueError for no faces, a label outside the classes or mismatched lengths."""
        embeddings = np.asarray(embeddings, np.float32)
        labels = np.asarray(labels, np.int64)
        if embeddings.ndim != 2 or len(embeddings) == 0 or len(labels) != len(embeddings):
            raise ValueError(f"a profile needs (N, D) embeddings and N labels, N >= 1; got {embeddings.shape} "
                             f"and {labels.shape}")
        if labels.min() < 0 or labels.max() >= len(EMOTIONS):
            raise ValueError(f"labels are class indices in [0, {len(EMOTIONS)})")
        enrolled = np.unique(labels)
        prototypes = np.stack([_unit(embeddings[labels == c].mean(axis=0)) for c in enrolled])
        counts = np.array([(labels == c).sum() for c in enrolled], np.int64)
        return cls(prototypes, enrolled, counts, float(weight), float(temperature), tuple(members))

    @property
    def classes(self) -> list[str]:
        """The enrolled classes' names, in ``EMOTIONS`` order."""
        return [EMOTIONS[c] for c in self.enrolled]

    def to_dict(self) -> dict:
        return {"format": PROFILE_FORMAT, "members": list(self.members),
                "weight": self.weight, "temperature": self.temperature,
                "classes": {EMOTIONS[c]: {"faces": int(n), "prototype": [round(float(v), 6) for v in p]}
                            for c, n, p in zip(self.enrolled, self.counts, self.prototypes)},
                "self_check": self.self_check}

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON to ``path`` (whole or not at all); its path."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json_text(self.to_dict()) + "\n")
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """A profile file that ``save`` wrote; ProfileError (one line, exit 2) naming the file for a
        missing, damaged or foreign one."""
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"no profile file at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ProfileError(f"{path}: not a profile file (not JSON); make one with fer-ensemble enrol") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: object, source: str = "profile") -> Profile:
        """The profile ``data`` holds (``to_dict``'s form), checked: ProfileError naming ``source``."""
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ProfileError(f"{source}: not a profile file of format {PROFILE_FORMAT!r} (found {found!r})")
        try:
            classes = data["classes"]
            enrolled = np.array([EMOTIONS.index(name) for name in classes], np.int64)
            prototypes = np.array([classes[name]["prototype"] for name in classes], np.float32)
            counts = np.array([int(classes[name]["faces"]) for name in classes], np.int64)
            weight, temperature = float(data["weight"]), float(data["temperature"])
            members = tuple(str(m) for m in data.get("members", []))
        except (KeyError, TypeError, ValueError):
            raise ProfileError(f"{source}: a damaged profile file (its classes, weight or temperature)") from None
        if (prototypes.ndim != 2 or len(prototypes) == 0 or not np.isfinite(prototypes).all()
                or not np.isfinite([weight, temperature]).all() or temperature <= 0 or weight < 0):
            raise ProfileError(f"{source}: a damaged profile file (its prototypes, weight or temperature)")
        return cls(prototypes, enrolled, counts, weight, temperature, members, dict(data.get("self_check") or {}))

    def check_fits(self, members: tuple[str, ...], embedding_size: int | None) -> None:
        """ProfileError unless this profile was made by an ensemble of ``members`` with embeddings
        of ``embedding_size``."""
        if embedding_size is None:
            raise ProfileError("this ensemble's members have no embedding output (exported before 2026-12-06): "
                               "profiles need it")
        if (self.members and tuple(self.members) != tuple(members)) or self.prototypes.shape[1] != embedding_size:
            raise ProfileError(f"this profile was made with another ensemble ({'+'.join(self.members) or '?'}, "
                               f"{self.prototypes.shape[1]} features), not {'+'.join(members)} "
                               f"({embedding_size}): enrol again")


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def blend(native: np.ndarray, embeddings: np.ndarray, profile: Profile) -> np.ndarray:
    """(N, C) float32 probabilities read through ``profile``: for (N, C) answers ``native`` (rows
    summing to one) and the same faces' (N, D) unit ``embeddings``, the enrolled classes' share of
    each row is redistributed by ``softmax(weight * log native + cos / temperature)``; the other
    classes keep theirs."""
    native = np.asarray(native, np.float64)
    cosine = np.asarray(embeddings, np.float64) @ profile.prototypes.T.astype(np.float64)  # (N, K)
    columns = profile.enrolled
    mass = native[:, columns].sum(axis=1, keepdims=True)
    scores = profile.weight * np.log(np.maximum(native[:, columns], 1e-12)) + cosine / profile.temperature
    scores -= scores.max(axis=1, keepdims=True)
    shares = np.exp(scores)
    out = native.copy()
    out[:, columns] = mass * shares / shares.sum(axis=1, keepdims=True)
    return out.astype(np.float32)
