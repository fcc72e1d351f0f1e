"""A person's profile: their own expressions, learnt from a few labelled faces of theirs, read
through the members' embeddings (torch-free to read; enrolling fits with scikit-learn).

``Profile.fit(embeddings, labels)`` fits a small multinomial logistic regression on the enrolled
faces' unit embeddings (``Ensemble.read_faces``), one row of weights per enrolled class. ``blend``
then reads a later face of the same person: among the enrolled classes the answer becomes
``softmax(weight * log p_ensemble + embedding @ coef.T + intercept)``, scaled to the probability
mass the ensemble gave those classes, so without a map (below) a class the person did not enrol
keeps the ensemble's answer. It works on the ensemble's answer (after any calibration and resting
face, under the prior strength asked for), so calibrations, resting faces and profiles compose in
that order.

What a person shows in a few photos is helped by what other people show relative to their own
faces: a ``ProfileMap`` (shipped: ``profile-map.json``, fitted on other people's photos by
``scripts/fit_profile_map.py``) scores a face's embedding minus its person's centre (the mean of
their enrolled classes' mean embeddings). ``Profile.fit`` adds ``MAP_WEIGHT`` times the map,
centred on the person enrolling, to the enrolled classes' weights (both are linear), and keeps the
centred map itself for the classes the person did not enrol: ``blend`` reads those through the map
(other people's reading of this face, relative to this person's own face), and a class neither
knows keeps the ensemble's answer.

With the faces' geometry (``--geometry``; ``fer_ensemble.runtime.geometry``), a profile enrolled
from photos whose 51 blendshapes were read also holds ``Profile.blendshapes``: the same fit on the
embeddings with ``BLENDSHAPE_WEIGHT`` times the blendshapes appended (``with_blendshapes``), helped by
the shipped ``profile-map-blendshapes.json``; ``blend`` reads a face whose blendshapes it is given
through that one, and any other face as before (docs/accuracy.md: 75.9 -> 79.4 % with two photos
per expression on taiwan-posed).

A profile holds weights learnt from face embeddings, which are personal data: it is written only
where its owner says, and it is for reading that person's expressions, never for identifying
anyone (docs/model-card.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from fer_ensemble.constants import BLENDSHAPES, EMOTIONS
from fer_ensemble.errors import UserError, checked_format, file_digest, json_text
from fer_ensemble.outputs import write_whole
from fer_ensemble.runtime.onnx import WEIGHTS_DIR

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

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


MAP_FORMAT = "fer-ensemble/profile-map/v1"
"""The ``format`` a profile map file records; another one is refused."""
PROFILE_MAP = WEIGHTS_DIR / "profile-map.json"
"""The shipped ``ProfileMap`` (for the shipped members only; docs/accuracy.md says what it was fitted on)."""
MAP_C = 3.0
"""The inverse L2 penalty of a profile map part's logistic regression (by default; each part records
its own); chosen by ``scripts/profile_study.py`` (docs/accuracy.md, "Personal profiles")."""
MAP_WEIGHT = 2.0
"""How much of the ``ProfileMap``'s scores a profile adds to its own (``Profile.fit``); chosen with
``MAP_C``."""
MAP_BALANCED = True
"""Whether a profile map part weighs each class alike when it is fitted (scikit-learn's
``class_weight="balanced"``): its photos are uneven (taiwan-posed has 116 happy photos and 75
fearful ones, CK+48 few of fear), while a person's own enrolment holds the same number of each.
Chosen on taiwan-posed (docs/accuracy.md, "Personal profiles"): fear 51.5 -> 55.1 % with two photos
per expression, accuracy 76.5 -> 75.9 %."""


PROFILE_MAP_BLENDSHAPES = WEIGHTS_DIR / "profile-map-blendshapes.json"
"""The shipped ``ProfileMap`` of embeddings with blendshapes appended (``with_blendshapes``): what
``Profile.blendshapes`` is fitted with (its CK+48 part reads no blendshapes: zeros in their columns)."""
BLENDSHAPE_WEIGHT = 1.0
"""How much the 51 blendshapes (each in [0, 1]) weigh beside a face's unit-length embedding in a
profile's features (``with_blendshapes``): looked at among 0.5, 1, 2 and 3 by
``scripts/geometry_study.py`` on taiwan-posed (docs/accuracy.md), so not held out."""


def with_blendshapes(embeddings: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
    """(N, D + 51) float32: (N, D) embeddings with ``BLENDSHAPE_WEIGHT`` times the same faces' (N, 51)
    blendshapes (``BLENDSHAPES`` order) appended: the features of ``Profile.blendshapes``."""
    return np.concatenate([np.asarray(embeddings, np.float32),
                           BLENDSHAPE_WEIGHT * np.asarray(blendshapes, np.float32)], axis=1)


def framed_with_blendshapes(embeddings: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
    """(N, F, D + 51) float32: the (N, F, D) embeddings of N faces at F framings each, each with its
    face's (N, 51) blendshapes appended (``with_blendshapes``; a NaN row, none read, as zeros: the
    caller leaves such faces out)."""
    n, frames, _ = embeddings.shape
    flat = with_blendshapes(embeddings.reshape(n * frames, -1), np.repeat(np.nan_to_num(blendshapes), frames, axis=0))
    return flat.reshape(n, frames, -1)


def blendshape_rows(faces: Iterable[object]) -> np.ndarray:
    """(N, 51) float32 blendshapes (``BLENDSHAPES`` order) of N faces (anything with a
    ``blendshapes`` mapping by name, or None), NaN rows for faces without them."""
    rows = [[np.nan] * len(BLENDSHAPES) if getattr(face, "blendshapes", None) is None
            else [float(face.blendshapes[name]) for name in BLENDSHAPES] for face in faces]  # type: ignore[attr-defined]
    return np.array(rows, np.float32).reshape(-1, len(BLENDSHAPES))


MAX_PROFILE_VALUE = 1e4
"""The largest weight, intercept or ensemble weight a profile file may hold: a fitted one stays far
below; a larger one (a damaged or hostile file) would overflow the scores ``blend`` exponentiates."""


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
    map: dict = field(default_factory=dict)
    """The ``ProfileMap`` used (``ProfileMap.describe`` and its weight); empty for none."""
    map_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """(M,) the map's classes; with ``map_coef`` (M, D) and ``map_intercept`` (M,): the map centred
    on this person, which ``blend`` reads the classes not enrolled through."""
    map_coef: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    map_intercept: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    blendshapes: Profile | None = None
    """The same person's profile on their faces' embeddings with their blendshapes appended
    (``with_blendshapes``), which ``blend`` reads a face through when it is given its blendshapes;
    None: enrolled without geometry."""

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels, c: float = PROFILE_C, weight: float = PROFILE_WEIGHT,
            members: tuple[str, ...] = (), profile_map: ProfileMap | None = None,
            map_weight: float = MAP_WEIGHT, blendshapes: np.ndarray | None = None,
            blendshape_map: ProfileMap | None = None) -> Profile:
        """A profile from (N, D) embeddings of one person's faces and their N class indices (into
        ``EMOTIONS``): a multinomial logistic regression (scikit-learn's, L2 penalty ``1 / c``, BLAS
        on one thread) over the classes present, plus ``map_weight`` times ``profile_map`` centred
        on this person (``person_centre``) when given; one class alone gives zero weights (it
        cannot be told from anything: the ensemble's answer stands). With the same faces' (N, 51)
        ``blendshapes`` (NaN rows: none read), ``Profile.blendshapes`` is the same fit on the faces
        that have them (``with_blendshapes``; ``blendshape_map`` as its map), when they show every
        enrolled class (two or more; else None: a face would lose a class its person enrolled).
        ValueError for no faces, a label outside the classes or mismatched lengths; ProfileError
        without scikit-learn."""
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
        profile = cls(enrolled, counts, coef, intercept, float(weight), tuple(members), c=float(c))
        if len(enrolled) > 1:
            profile.coef, profile.intercept = _logistic(embeddings, labels, c)
            if profile_map is not None and map_weight:
                centre = person_centre(embeddings, labels)
                map_coef, map_intercept = profile_map.centred(enrolled, centre)
                profile.coef += map_weight * map_coef
                profile.intercept += map_weight * map_intercept
                profile.map_classes = profile_map.classes.copy()
                profile.map_coef, profile.map_intercept = profile_map.centred(profile_map.classes, centre)
                profile.map = {**profile_map.describe(), "weight": float(map_weight)}
        if blendshapes is not None:
            blendshapes = np.asarray(blendshapes, np.float32)
            if blendshapes.shape != (len(labels), len(BLENDSHAPES)):
                raise ValueError(f"blendshapes must be ({len(labels)}, {len(BLENDSHAPES)}), got {blendshapes.shape}")
            read = np.isfinite(blendshapes).all(axis=1)
            if len(enrolled) > 1 and np.array_equal(np.unique(labels[read]), enrolled):
                profile.blendshapes = cls.fit(with_blendshapes(embeddings[read], blendshapes[read]), labels[read],
                                              c, weight, members, blendshape_map, map_weight)
        return profile

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
                "map": {**self.map, "classes": _table(self.map_classes, self.map_coef, self.map_intercept)}
                if self.map else {},
                "self_check": self.self_check,
                **({"blendshapes": self.blendshapes.to_dict()} if self.blendshapes is not None else {})}

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON to ``path`` (whole or not at all); its path."""
        return write_whole(path, json_text(self.to_dict()) + "\n")

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
        data = checked_format(data, PROFILE_FORMAT, source, "profile file", ProfileError)
        try:
            classes = data["classes"]
            enrolled = np.array([EMOTIONS.index(name) for name in classes], np.int64)
            coef = np.array([classes[name]["coef"] for name in classes], np.float32)
            intercept = np.array([float(classes[name]["intercept"]) for name in classes], np.float32)
            counts = np.array([int(classes[name]["faces"]) for name in classes], np.int64)
            weight, c = float(data["weight"]), float(data.get("c", PROFILE_C))
            members = tuple(str(m) for m in data.get("members", []))
            self_check = data.get("self_check") or {}
            if not isinstance(self_check, dict):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise ProfileError(f"{source}: a damaged profile file (its classes, weight or self-check)") from None
        if (coef.ndim != 2 or len(coef) == 0 or not np.isfinite(coef).all() or not np.isfinite(intercept).all()
                or np.abs(coef).max() > MAX_PROFILE_VALUE or np.abs(intercept).max() > MAX_PROFILE_VALUE
                or not 0 <= weight <= MAX_PROFILE_VALUE):
            raise ProfileError(f"{source}: a damaged profile file (its weights)")
        profile = cls(enrolled, counts, coef, intercept, weight, members, dict(self_check), c)
        if data.get("map"):
            try:
                profile.map = {k: v for k, v in dict(data["map"]).items() if k != "classes"}
                profile.map_classes, profile.map_coef, profile.map_intercept = _rows(data["map"]["classes"])
            except (KeyError, TypeError, ValueError):
                raise ProfileError(f"{source}: a damaged profile file (its map)") from None
            if (profile.map_coef.ndim != 2 or profile.map_coef.shape[1] != coef.shape[1]
                    or not np.isfinite(profile.map_coef).all() or not np.isfinite(profile.map_intercept).all()):
                raise ProfileError(f"{source}: a damaged profile file (its map's weights)")
        if data.get("blendshapes"):
            nested = cls.from_dict(data["blendshapes"], source)
            if (nested.blendshapes is not None or nested.coef.shape[1] != coef.shape[1] + len(BLENDSHAPES)
                    or nested.members != members):
                raise ProfileError(f"{source}: a damaged profile file (its blendshapes part)")
            profile.blendshapes = nested
        return profile

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


def person_centre(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(D,) float32: the mean of each class's mean (N, D) embedding among one person's N labelled
    faces, so a class enrolled with more faces does not pull the centre to itself."""
    labels = np.asarray(labels)
    return np.mean([embeddings[labels == c].mean(axis=0) for c in np.unique(labels)], axis=0).astype(np.float32)


def _rows(table: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class indices, (K, D) float32 weights and (K,) intercepts of ``{class: {coef, intercept}}``."""
    return (np.array([EMOTIONS.index(name) for name in table], np.int64),
            np.array([table[name]["coef"] for name in table], np.float32),
            np.array([float(table[name]["intercept"]) for name in table], np.float32))


def _table(classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> dict:
    """``_rows``' inverse, rounded to 6 decimals (the JSON form)."""
    return {EMOTIONS[c]: {"intercept": round(float(b), 6), "coef": [round(float(v), 6) for v in w]}
            for c, w, b in zip(classes, coef, intercept)}


@dataclass
class MapPart:
    """One part of a ``ProfileMap``, learnt from one set of people's labelled faces: class scores
    ``coef @ (embedding - centre) + intercept`` for the class indices ``classes`` (K,), ``coef``
    (K, D) float32, ``centre`` being the face's person's ``person_centre``; ``weight``: its share
    in the map; ``c``: its penalty; ``fitted_on``: what it learnt from (``labels``: the labels
    file's SHA-256, ``labels_file``, ``groups``: the people's names, ``photos``)."""

    classes: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    weight: float = 1.0
    c: float = MAP_C
    fitted_on: dict = field(default_factory=dict)
    balanced: bool = False
    """Fitted with each class weighed alike (``MAP_BALANCED``); a part that does not say was not."""

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels, groups, c: float = MAP_C, weight: float = 1.0,
            fitted_on: dict | None = None, balanced: bool = MAP_BALANCED) -> MapPart:
        """A part from (N, D) embeddings of several people's faces, their N class indices and N
        person names (each person centred on their own ``person_centre``): a multinomial logistic
        regression (L2 penalty ``1 / c``, each class weighed alike when ``balanced``, BLAS on one
        thread). ValueError for fewer than two people or classes; ProfileError without scikit-learn."""
        embeddings = np.asarray(embeddings, np.float32)
        labels, groups = np.asarray(labels, np.int64), np.asarray(groups)
        if len(set(groups.tolist())) < 2 or len(np.unique(labels)) < 2:
            raise ValueError("a profile map needs two people or more, and two classes or more")
        centred = embeddings.copy()
        for person in set(groups.tolist()):
            mine = groups == person
            centred[mine] -= person_centre(embeddings[mine], labels[mine])
        coef, intercept = _logistic(centred, labels, c, balanced)
        return cls(np.unique(labels), coef, intercept, float(weight), float(c), dict(fitted_on or {}), balanced)

    def padded(self, extra: int) -> MapPart:
        """This part with ``extra`` more features it gives no weight to (zero columns): a part of
        embeddings alone in a map of embeddings with blendshapes (``with_blendshapes``)."""
        coef = np.concatenate([self.coef, np.zeros((len(self.coef), extra), np.float32)], axis=1)
        return MapPart(self.classes, coef, self.intercept, self.weight, self.c,
                       {**self.fitted_on, "padded": int(extra)}, self.balanced)

    def rows(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, D) weights and (K,) intercepts for the class indices ``classes``: the part's rows, a
        class it was not fitted on getting its mean row."""
        index = [np.flatnonzero(self.classes == c) for c in classes]
        coef = np.stack([self.coef[i[0]] if len(i) else self.coef.mean(axis=0) for i in index])
        intercept = np.array([self.intercept[i[0]] if len(i) else self.intercept.mean() for i in index])
        return coef, intercept

    def to_dict(self) -> dict:
        """The JSON form of the part inside a map file: weight, c, balanced, fitted_on and its class rows."""
        return {"weight": self.weight, "c": self.c, "balanced": self.balanced, "fitted_on": self.fitted_on,
                "classes": _table(self.classes, self.coef, self.intercept)}


@dataclass
class ProfileMap:
    """Expressions relative to the person's own face, learnt from other people: the weighted sum of
    its ``parts``' scores (``MapPart``), over the classes any part knows; ``members``: the member
    files' SHA-256 by name (a map is used only with those very files). Each part records what it
    learnt from, so nobody is scored with a part fitted on their own photos (``held_out``)."""

    parts: list[MapPart]
    members: dict

    @property
    def classes(self) -> np.ndarray:
        """(M,) the class indices some part knows, in ``EMOTIONS`` order."""
        return np.unique(np.concatenate([part.classes for part in self.parts]))

    def centred(self, classes: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, D) float32 weights and (K,) intercepts scoring the class indices ``classes`` of a
        person whose centre is ``centre`` (D,): ``sum(weight * (coef @ (e - centre) + intercept))``
        over the parts, written as one linear map of ``e``."""
        pieces = [(part.weight, *part.rows(classes)) for part in self.parts]
        coef = sum(weight * rows for weight, rows, _ in pieces)
        intercept = sum(weight * offsets for weight, _, offsets in pieces)
        return np.asarray(coef, np.float32), np.asarray(intercept - coef @ centre, np.float32)

    def describe(self) -> dict:
        """What a profile records of the map it used: each part's weight, penalty and sources."""
        return {"parts": [{"weight": p.weight, "c": p.c, "balanced": p.balanced,
                           "fitted_on": {k: v for k, v in p.fitted_on.items() if k not in ("labels", "groups")}}
                          for p in self.parts]}

    def part_fitted_on(self, labels_file: str | Path) -> int | None:
        """The index of the part fitted on the photos of ``labels_file`` (same SHA-256), or None."""
        digest = file_digest(labels_file)
        return next((i for i, p in enumerate(self.parts) if p.fitted_on.get("labels") == digest), None)

    def held_out(self, index: int, embeddings: np.ndarray, labels, groups, person: str) -> ProfileMap:
        """This map with part ``index`` refitted (same penalty and weight) on the (N, D)
        ``embeddings``, N labels and N ``groups`` of its own photos other than ``person``'s."""
        part, others = self.parts[index], np.asarray(groups) != person
        refit = MapPart.fit(embeddings[others], np.asarray(labels)[others], np.asarray(groups)[others], part.c,
                            part.weight, {"held_out": person}, part.balanced)
        return ProfileMap([refit if i == index else p for i, p in enumerate(self.parts)], self.members)

    def to_dict(self) -> dict:
        """The JSON form ``save`` writes: format, members and the parts (6 decimals)."""
        return {"format": MAP_FORMAT, "members": self.members, "parts": [p.to_dict() for p in self.parts]}

    def save(self, path: str | Path) -> Path:
        """Write the map as JSON to ``path`` (whole or not at all); its path."""
        return write_whole(path, json_text(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path = PROFILE_MAP) -> ProfileMap:
        """The map file at ``path``; ProfileError (one line) naming it when missing, damaged or foreign."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != MAP_FORMAT or not data["parts"]:
                raise ValueError
            parts = [MapPart(*_rows(p["classes"]), float(p["weight"]), float(p["c"]), dict(p.get("fitted_on") or {}),
                             bool(p.get("balanced", False))) for p in data["parts"]]
            return cls(parts, dict(data["members"]))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            raise ProfileError(f"{path}: not a profile map file of format {MAP_FORMAT!r}") from None


def require_fitting() -> None:
    """ProfileError (one line naming the extra) when scikit-learn, which fits profiles, is missing:
    what ``enrol`` and ``evaluate --enrol`` check before reading any photo."""
    try:
        import sklearn.linear_model  # noqa: F401 - only whether it can be imported
        import threadpoolctl  # noqa: F401
    except ImportError:
        raise ProfileError("enrolling a profile needs scikit-learn: pip install 'fer-ensemble[adapt]'") from None


def _logistic(embeddings: np.ndarray, labels: np.ndarray, c: float,
              balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(K, D) weights and (K,) intercepts of scikit-learn's multinomial logistic regression over the
    K classes in ``labels``, each class weighed alike when ``balanced`` (a binary fit is written as
    two rows: 0 and its weights)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ProfileError("enrolling a profile needs scikit-learn: pip install 'fer-ensemble[adapt]'") from None
    with threadpool_limits(limits=1, user_api="blas"):  # a tiny fit: more threads only wait on each other
        model = LogisticRegression(C=c, max_iter=1000, class_weight="balanced" if balanced else None).fit(
            embeddings, labels)
    coef, intercept = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
    if len(model.classes_) == 2:
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    return coef, intercept


def fitted_in_parallel(fit: Callable[[_Item], _Result], items: Iterable[_Item],
                       workers: int | None = None) -> list[_Result]:
    """``[fit(item) for item in items]``, in order, on ``workers`` threads (default: one per CPU
    core), each fit's BLAS on one thread (here and in ``_logistic``, on the thread that runs it), so
    each fit gives exactly what it gives alone: scikit-learn's L-BFGS spends much of its time in
    NumPy, which lets other threads run (on this project's 2-core machine the held-out profile maps
    of ``evaluate --enrol`` take 13 s instead of 30). Ctrl-C or a fit's error cancels the fits not
    yet started and is raised once the running ones end. ProfileError without scikit-learn."""
    require_fitting()
    from threadpoolctl import threadpool_limits

    def limited(item: _Item) -> _Result:
        with threadpool_limits(limits=1, user_api="blas"):  # limits may be per thread (OpenMP builds)
            return fit(item)

    pool = ThreadPoolExecutor(workers or os.cpu_count() or 1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            return list(pool.map(limited, items))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # no queued fit runs on after Ctrl-C or an error
        raise
    finally:
        pool.shutdown(wait=True)


def blend(answer: np.ndarray, embeddings: np.ndarray, profile: Profile,
          blendshapes: np.ndarray | None = None) -> np.ndarray:
    """(N, C) float32 probabilities read through ``profile``, for (N, C) ``answer`` rows (summing to
    one) and the same faces' (N, D) unit ``embeddings``. The classes the person enrolled or the
    profile's map knows share the probability the answer gives them together: a class not enrolled
    takes its map probability (softmax over the map's classes) of it, the enrolled classes the rest,
    split by ``softmax(weight * log answer + embeddings @ coef.T + intercept)``. Every other class
    keeps the answer's probability (without a map: every class not enrolled). Given the faces' (N,
    51) ``blendshapes`` (NaN rows: none read), a face that has them is read through
    ``profile.blendshapes`` (its features ``with_blendshapes``) when the profile holds one."""
    answer = np.asarray(answer, np.float64)
    embeddings = np.asarray(embeddings, np.float64)
    if profile.blendshapes is None or blendshapes is None:
        return _blend(answer, embeddings, profile)
    blendshapes = np.asarray(blendshapes, np.float32).reshape(len(answer), len(BLENDSHAPES))
    read = np.isfinite(blendshapes).all(axis=1)
    out = _blend(answer, embeddings, profile) if not read.all() else np.zeros(answer.shape, np.float32)
    if read.any():
        out[read] = _blend(answer[read], with_blendshapes(embeddings[read], blendshapes[read]).astype(np.float64),
                           profile.blendshapes)
    return out


def _blend(answer: np.ndarray, embeddings: np.ndarray, profile: Profile) -> np.ndarray:
    """``blend`` through ``profile``'s own weights: (N, C) float64 answers and (N, D) features."""
    columns = profile.enrolled
    others = [i for i, c in enumerate(profile.map_classes) if c not in columns]
    known = np.union1d(columns, profile.map_classes[others]).astype(np.int64)
    mass = answer[:, known].sum(axis=1, keepdims=True)
    out = answer.copy()
    left = mass
    if others:  # other people's reading, relative to this person's face
        relative = _softmax(embeddings @ profile.map_coef.T.astype(np.float64) + profile.map_intercept)[:, others]
        out[:, profile.map_classes[others]] = mass * relative
        left = mass * (1.0 - relative.sum(axis=1, keepdims=True))
    scores = embeddings @ profile.coef.T.astype(np.float64) + profile.intercept
    if profile.weight:
        scores += profile.weight * np.log(np.maximum(answer[:, columns], 1e-12))
    out[:, columns] = left * _softmax(scores)
    return out.astype(np.float32)


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) float64 scores."""
    shares = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shares / shares.sum(axis=1, keepdims=True)
