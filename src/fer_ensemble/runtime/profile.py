"""A person's profile: their own expressions, learnt from a few labelled faces of theirs, read
through the members' embeddings (torch-free to read; enrolling fits with scikit-learn).

``Profile.fit(embeddings, labels)`` fits a small multinomial logistic regression on the enrolled
faces' unit embeddings (``Ensemble.read_faces``), one row of weights per enrolled class. ``blend``
then reads a later face of the same person: among the enrolled classes the answer becomes
``softmax(weight * log p_ensemble + embedding @ coef.T + intercept)``, scaled to the probability
mass the ensemble gave those classes, so a class the person did not enrol keeps the ensemble's
answer. It works on the ensemble's answer (after any calibration and resting face, under the prior
strength asked for), so calibrations, resting faces and profiles compose in that order.

A profile holds weights learnt from face embeddings, which are personal data: it is written only
where its owner says, and it is for reading that person's expressions, never for identifying
anyone (docs/model-card.md).
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
PROFILE_C = 1000.0
"""The inverse L2 penalty of the per-person logistic regression (scikit-learn's ``C``); chosen by
``scripts/profile_study.py`` on taiwan-posed (docs/accuracy.md, "Personal profiles")."""
ENROL_FRAMINGS = ((0.0, 0.0), (0.08, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05))
"""(margin, offset) added to the apps' framing for the crops each enrolment photo gives (its own
framing first, then a little wider, narrower, lower and higher): augmentation, chosen with
``PROFILE_C`` by ``scripts/profile_study.py``. Face crops given as crops are used as they are."""
PROFILE_WEIGHT = 0.0
"""The ensemble's log-probabilities' weight beside the profile's scores (``blend``); chosen with
``PROFILE_C``: the study found the ensemble's answer adds nothing among the enrolled classes."""


class ProfileError(UserError):
    """A profile file that cannot be used (missing, damaged, another format, another ensemble's)."""


@dataclass
class Profile:
    """One person's expressions: for the enrolled class indices ``enrolled`` (K,) (into
    ``EMOTIONS``), each learnt from ``counts`` faces, the logistic regression's ``coef`` (K, D)
    float32 and ``intercept`` (K,); ``weight`` of the ensemble's log-probabilities in ``blend``;
    ``members``: the ensemble members' names whose embeddings these are (a profile is read only by
    the ensemble that made it); ``self_check``: what enrolment measured (per class, photos left out
    in turn), for the owner to see; ``c``: the penalty it was fitted with. ``counts`` counts
    embeddings (an enrolled photo gives one per framing)."""

    enrolled: np.ndarray
    counts: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    weight: float = PROFILE_WEIGHT
    members: tuple[str, ...] = ()
    self_check: dict = field(default_factory=dict)
    c: float = PROFILE_C

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels, c: float = PROFILE_C, weight: float = PROFILE_WEIGHT,
            members: tuple[str, ...] = ()) -> Profile:
        """A profile from (N, D) embeddings of one person's faces and their N class indices (into
        ``EMOTIONS``): a multinomial logistic regression (scikit-learn's, L2 penalty ``1 / c``, BLAS
        on one thread) over the classes present; one class alone gives zero weights (it cannot be
        told from anything: the ensemble's answer stands). ValueError for no faces, a label outside
        the classes or mismatched lengths; ProfileError without scikit-learn."""
        embeddings = np.asarray(embeddings, np.float32)
        labels = np.asarray(labels, np.int64)
        if embeddings.ndim != 2 or len(embeddings) == 0 or len(labels) != len(embeddings):
            raise ValueError(f"a profile needs (N, D) embeddings and N labels, N >= 1; got {embeddings.shape} "
                             f"and {labels.shape}")
        if labels.min() < 0 or labels.max() >= len(EMOTIONS):
            raise ValueError(f"labels are class indices in [0, {len(EMOTIONS)})")
        enrolled = np.unique(labels)
        counts = np.array([(labels == c).sum() for c in enrolled], np.int64)
        coef = np.zeros((len(enrolled), embeddings.shape[1]), np.float32)
        intercept = np.zeros(len(enrolled), np.float32)
        if len(enrolled) > 1:
            coef, intercept = _logistic(embeddings, labels, c)
        return cls(enrolled, counts, coef, intercept, float(weight), tuple(members), c=float(c))

    @property
    def classes(self) -> list[str]:
        """The enrolled classes' names, in ``EMOTIONS`` order."""
        return [EMOTIONS[c] for c in self.enrolled]

    def to_dict(self) -> dict:
        """The JSON form ``save`` writes and ``from_dict`` reads: format, members, weight, c, and per
        enrolled class its count, intercept and weights (rounded to 6 decimals), and the self-check."""
        return {"format": PROFILE_FORMAT, "members": list(self.members), "weight": self.weight, "c": self.c,
                "classes": {EMOTIONS[c]: {"faces": int(n), "intercept": round(float(b), 6),
                                          "coef": [round(float(v), 6) for v in w]}
                            for c, n, w, b in zip(self.enrolled, self.counts, self.coef, self.intercept)},
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
            coef = np.array([classes[name]["coef"] for name in classes], np.float32)
            intercept = np.array([float(classes[name]["intercept"]) for name in classes], np.float32)
            counts = np.array([int(classes[name]["faces"]) for name in classes], np.int64)
            weight, c = float(data["weight"]), float(data.get("c", PROFILE_C))
            members = tuple(str(m) for m in data.get("members", []))
        except (KeyError, TypeError, ValueError):
            raise ProfileError(f"{source}: a damaged profile file (its classes or weight)") from None
        if (coef.ndim != 2 or len(coef) == 0 or not np.isfinite(coef).all() or not np.isfinite(intercept).all()
                or not np.isfinite(weight) or weight < 0):
            raise ProfileError(f"{source}: a damaged profile file (its weights)")
        return cls(enrolled, counts, coef, intercept, weight, members, dict(data.get("self_check") or {}), c)

    def check_fits(self, members: tuple[str, ...], embedding_size: int | None) -> None:
        """ProfileError unless this profile was made by an ensemble of ``members`` with embeddings
        of ``embedding_size``."""
        if embedding_size is None:
            raise ProfileError("this ensemble's members have no embedding output (exported before 2026-12-06): "
                               "profiles need it")
        if (self.members and tuple(self.members) != tuple(members)) or self.coef.shape[1] != embedding_size:
            raise ProfileError(f"this profile was made with another ensemble ({'+'.join(self.members) or '?'}, "
                               f"{self.coef.shape[1]} features), not {'+'.join(members)} "
                               f"({embedding_size}): enrol again")


def require_fitting() -> None:
    """ProfileError (one line naming the extra) when scikit-learn, which fits profiles, is missing:
    what ``enrol`` and ``evaluate --enrol`` check before reading any photo."""
    try:
        import sklearn.linear_model  # noqa: F401 - only whether it can be imported
        import threadpoolctl  # noqa: F401
    except ImportError:
        raise ProfileError("enrolling a profile needs scikit-learn: pip install 'fer-ensemble[adapt]'") from None


def _logistic(embeddings: np.ndarray, labels: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """(K, D) weights and (K,) intercepts of scikit-learn's multinomial logistic regression over the
    K classes in ``labels`` (a binary fit is written as two rows: 0 and its weights)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ProfileError("enrolling a profile needs scikit-learn: pip install 'fer-ensemble[adapt]'") from None
    with threadpool_limits(limits=1, user_api="blas"):  # a tiny fit: more threads only wait on each other
        model = LogisticRegression(C=c, max_iter=1000).fit(embeddings, labels)
    coef, intercept = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
    if len(model.classes_) == 2:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    return coef, intercept


def blend(answer: np.ndarray, embeddings: np.ndarray, profile: Profile) -> np.ndarray:
    """(N, C) float32 probabilities read through ``profile``: for (N, C) ``answer`` rows (summing to
    one) and the same faces' (N, D) unit ``embeddings``, the enrolled classes' share of each row is
    redistributed by ``softmax(weight * log answer + embeddings @ coef.T + intercept)``; the other
    classes keep theirs."""
    answer = np.asarray(answer, np.float64)
    columns = profile.enrolled
    scores = np.asarray(embeddings, np.float64) @ profile.coef.T.astype(np.float64) + profile.intercept
    if profile.weight:
        scores += profile.weight * np.log(np.maximum(answer[:, columns], 1e-12))
    scores -= scores.max(axis=1, keepdims=True)
    shares = np.exp(scores)
    out = answer.copy()
    out[:, columns] = answer[:, columns].sum(axis=1, keepdims=True) * shares / shares.sum(axis=1, keepdims=True)
    return out.astype(np.float32)
