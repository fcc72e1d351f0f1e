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

The file is read into an ``EnsembleSpec`` (``EnsembleSpec.from_dict`` checks its ``format``, every
member entry and the prior, and names the key that is wrong in one line: ``SpecError``); keys it
does not use (``fitted_on``, ``latency``, ``metrics``) are kept in ``EnsembleSpec.info``.

Each member sees all faces of a frame as one batch at its own input size; its logits are divided
by its temperature, turned into probabilities (averaged with the mirrored faces' when the
member's ``flip_tta`` is set), and the members' probabilities are mixed with the weights: the
native probabilities (``read_faces``), before any calibration. ``answer`` then applies the file's
calibration, if any, and reads a person's resting face, if one is given, from the native
probabilities, composing the two when both are there (both keep the answer under FER+'s prior;
``fer_ensemble.runtime.calibration.compose_relative``). Last,
``prior_strength`` of FER+'s class prior is divided out (``fer_ensemble.prior``): 0 answers
under FER+'s own prior, 1 under equal priors; the ensemble file holds the fitted default.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.errors import SpecError, UserError, file_digest, read_json_object
from fer_ensemble.preprocess import prepare_batch
from fer_ensemble.prior import adjust_probabilities, parse_strength
from fer_ensemble.runtime.calibration import Calibration, RestingFace, compose_relative
from fer_ensemble.runtime.classifier import OnnxClassifier, resolve_member, softmax
from fer_ensemble.runtime.deprecation import renamed_keyword, warn_deprecated
from fer_ensemble.runtime.onnx import WEIGHTS_DIR
from fer_ensemble.runtime.profile import (
    PROFILE_MAP,
    PROFILE_MAP_BLENDSHAPES,
    Profile,
    ProfileError,
    ProfileMap,
    blend,
)

CALIBRATION_PRESETS = {"posed": WEIGHTS_DIR / "calibration-posed.json"}
"""Named calibrations shipped in the package (``--calibration NAME``); docs/accuracy.md says how each was fitted."""

ENSEMBLE_FORMAT = "fer-ensemble/ensemble/v1"
"""The ``format`` of the ensemble files this version writes (``EnsembleSpec.to_dict``) and reads."""


@dataclass
class Member:
    """One loaded member of an ``Ensemble``: its ``classifier``, the ``temperature`` its logits are
    divided by (> 0; fitted on FER+ Valid by ``fit-ensemble``), its ``weight`` in the soft vote (>= 0;
    the weights are normalised) and ``flip_tta``: average with the mirrored faces' answer."""

    classifier: OnnxClassifier
    temperature: float = 1.0
    weight: float = 1.0
    flip_tta: bool = False


def calibrated_probabilities(logits: np.ndarray, mirrored_logits: np.ndarray | None,
                             temperature: float) -> np.ndarray:
    """Temperature-scaled softmax of (N, C) ``logits`` (``softmax``), averaged with that of the
    mirrored faces' (N, C) logits when given: (N, C) probabilities in the logits' dtype.
    ``fit-ensemble`` fits with this very formula, so the shipped figures reproduce exactly."""
    probs = softmax(logits, temperature)
    if mirrored_logits is not None:
        probs = 0.5 * (probs + softmax(mirrored_logits, temperature))
    return probs


def member_probabilities(member: Member, faces) -> np.ndarray:
    """One member's calibrated (N, C) float32 probabilities (under FER+'s prior) for a sequence of N
    face crops (gray (H, W) or BGR (H, W, 3) uint8, any size; resized to the member's input)."""
    return member_outputs(member, faces, embeddings=False)[0]


def member_outputs(member: Member, faces, embeddings: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``member_probabilities`` and, in the same pass, the member's (N, D) float32 embeddings, each
    row of unit length, averaged with the mirrored faces' (and made unit again) where the member
    reads mirrored faces too; None for a member without the output or when not asked for."""
    batch = prepare_batch(faces, member.classifier.preprocessing)
    logits, embedding = member.classifier.logits_and_embeddings(batch, embeddings)
    mirrored = mirrored_embedding = None
    if member.flip_tta:
        mirrored, mirrored_embedding = member.classifier.logits_and_embeddings(
            np.ascontiguousarray(batch[..., ::-1]), embeddings)
    probabilities = calibrated_probabilities(logits, mirrored, member.temperature)
    if embedding is None:
        return probabilities, None
    embedding = unit_rows(embedding)
    if mirrored_embedding is not None:
        embedding = unit_rows(embedding + unit_rows(mirrored_embedding))
    return probabilities, embedding


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(N, D) ``vectors`` scaled to unit length row by row, in float32 (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: object, what: str, source: str, low: float, high: float | None = None,
            low_open: bool = False) -> float:
    """``value`` as a float in [low, high] ((low, high] with ``low_open``); SpecError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{source}: {what} must be a number, not {_short(value)}")
    if not np.isfinite(value) or value < low or (low_open and value == low) or (high is not None and value > high):
        bounds = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise SpecError(f"{source}: {what} must lie in {bounds}, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class MemberSpec:
    """One entry of an ensemble file's ``members``: the member's model card (``card``, a path
    relative to the file's folder, or to the package's weights with ``"weights": "shipped"``), the
    card's ``variant`` to load (``fp32``, ``int8``; None: the card's default), its ``temperature``
    (> 0), its ``weight`` in the vote (>= 0) and ``flip_tta`` (None: the file's own ``flip_tta``)."""

    card: str
    variant: str | None = None
    temperature: float = 1.0
    weight: float = 1.0
    flip_tta: bool | None = None

    @classmethod
    def from_dict(cls, data: object, source: str = "ensemble file", index: int = 0) -> MemberSpec:
        """The member entry ``data`` (a JSON object), checked: SpecError naming ``source``, the
        entry and the key for an unknown key, a missing ``card`` or a value of the wrong type or
        range."""
        what = f"members[{index}]"
        if not isinstance(data, dict):
            raise SpecError(f"{source}: {what} must be an object with a 'card', not {_short(data)}")
        if unknown := sorted(set(data) - MEMBER_KEYS):
            raise SpecError(f"{source}: {what} has unknown key(s) {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(sorted(MEMBER_KEYS))})")
        card, variant, flip = data.get("card"), data.get("variant"), data.get("flip_tta")
        if not isinstance(card, str) or not card:
            raise SpecError(f"{source}: {what} needs a 'card' (the model card's file name), not {_short(card)}")
        if variant is not None and not isinstance(variant, str):
            raise SpecError(f"{source}: {what}.variant must be a string such as 'fp32' or 'int8', not {_short(variant)}")
        if flip is not None and not isinstance(flip, bool):
            raise SpecError(f"{source}: {what}.flip_tta must be true or false, not {_short(flip)}")
        return cls(card, variant, _number(data.get("temperature", 1.0), f"{what}.temperature", source, 0.0,
                                          low_open=True),
                   _number(data.get("weight", 1.0), f"{what}.weight", source, 0.0), flip)

    def to_dict(self) -> dict:
        """The JSON form ``from_dict`` reads (``variant`` and ``flip_tta`` left out when None)."""
        data: dict[str, Any] = {"card": self.card}
        if self.variant is not None:
            data["variant"] = self.variant
        data.update(temperature=self.temperature, weight=self.weight)
        if self.flip_tta is not None:
            data["flip_tta"] = self.flip_tta
        return data


def check_weights(weights: list[float], source: str = "ensemble file") -> None:
    """SpecError naming ``source`` unless the members' vote ``weights`` (each >= 0) sum to a positive,
    finite number: the vote is divided by their sum, so all 0 would answer NaN for every face."""
    total = float(sum(weights))
    if not 0 < total < math.inf:
        raise SpecError(f"{source}: the members' weights sum to {total:g}; at least one member needs a "
                        "weight above 0 (the soft vote is divided by their sum)")


MEMBER_KEYS = frozenset({"card", "variant", "temperature", "weight", "flip_tta"})
"""The keys a member entry of an ensemble file may hold (``MemberSpec``'s fields)."""
ENSEMBLE_KEYS = frozenset({"format", "classes", "members", "prior", "flip_tta", "weights", "calibration",
                           "resting_face"})
"""The keys of an ensemble file that ``EnsembleSpec`` reads; any other is kept in ``EnsembleSpec.info``."""


@dataclass
class EnsembleSpec:
    """An ensemble file's contents, checked (the layout in this module's docstring).

    ``members``: at least one ``MemberSpec`` (a spec built for an ``Ensemble`` given loaded members
    may have none); ``classes``: the class names the file records (None: not recorded; the cards
    decide); ``class_prior``: the training data's class prior, a (C,) vector summing to about one
    (None: the cards' own); ``prior_strength``: the default strength in [0, 1] answers are given
    under (``fer_ensemble.prior``); ``flip_tta``: the default for members that do not say;
    ``weights``: ``"shipped"`` finds the cards in the package's weights, None beside the file;
    ``calibration`` and ``resting_spread`` ((C,) positive float64): optional, ``resting_measured_on``
    saying where the spread was measured; ``info``: every other key, verbatim (what ``fit-ensemble``
    measured). ``format`` is ``ENSEMBLE_FORMAT``. The one in-memory form of an ensemble file:
    ``fit-ensemble`` and ``adapt`` build one and write its ``to_dict``; ``Ensemble`` takes one."""

    members: tuple[MemberSpec, ...]
    classes: tuple[str, ...] | None = None
    class_prior: tuple[float, ...] | None = None
    prior_strength: float = 0.0
    flip_tta: bool = False
    weights: str | None = None
    calibration: Calibration | None = None
    resting_spread: np.ndarray | None = None
    resting_measured_on: str | None = None
    info: dict = field(default_factory=dict)
    format: str = ENSEMBLE_FORMAT

    @classmethod
    def from_dict(cls, data: object, source: str = "ensemble file", members_required: bool = True) -> EnsembleSpec:
        """The ensemble file's contents ``data`` (a JSON object), checked; ``source`` (the file's
        path) starts every message. Raises SpecError (a UserError, exit code 2), one line naming
        the key, for: a ``format`` other than ``ENSEMBLE_FORMAT`` (a dict without one is read as
        it), no ``members`` list or an empty one (unless not ``members_required``), a damaged
        member entry (``MemberSpec.from_dict``), members whose weights are all 0 (``check_weights``),
        a ``prior`` that is not ``{"class_prior": [...], "strength": s}`` with s in [0, 1],
        ``weights`` other than ``"shipped"``, ``classes`` that are not strings, a non-boolean
        ``flip_tta``; UserError for a damaged ``calibration``
        (``Calibration.from_dict``) or ``resting_face`` (``read_resting_spread``)."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: not an ensemble file (a JSON object was expected, not {type(data).__name__})")
        found = data.get("format", ENSEMBLE_FORMAT)
        if found != ENSEMBLE_FORMAT:
            raise SpecError(f"{source}: an ensemble file of format {_short(found)}, which this version of "
                            f"fer-ensemble does not read (it reads {ENSEMBLE_FORMAT!r})")
        members = data.get("members", [] if not members_required else None)
        if not isinstance(members, list):
            raise SpecError(f"{source}: not an ensemble file ('members' must list objects with a 'card')")
        if members_required and not members:
            raise SpecError(f"{source}: an ensemble needs at least one member")
        classes = data.get("classes")
        if classes is not None and (not isinstance(classes, list) or not classes
                                    or not all(isinstance(c, str) for c in classes)):
            raise SpecError(f"{source}: classes must list class names, not {_short(classes)}")
        n_classes = len(classes) if classes is not None else len(EMOTIONS)
        class_prior, strength = cls._prior(data.get("prior", {}), n_classes, source)
        flip = data.get("flip_tta", False)
        if not isinstance(flip, bool):
            raise SpecError(f"{source}: flip_tta must be true or false, not {_short(flip)}")
        weights = data.get("weights")
        if weights not in (None, "shipped"):
            raise SpecError(f"{source}: weights must be \"shipped\" (the package's cards) or absent, not {_short(weights)}")
        calibration = Calibration.from_dict(data["calibration"], source) if "calibration" in data else None
        entries = tuple(MemberSpec.from_dict(entry, source, i) for i, entry in enumerate(members))
        if entries:
            check_weights([entry.weight for entry in entries], source)
        return cls(
            members=entries,
            classes=None if classes is None else tuple(classes),
            class_prior=class_prior, prior_strength=strength, flip_tta=flip, weights=weights,
            calibration=calibration, resting_spread=read_resting_spread(data, n_classes, source),
            resting_measured_on=_measured_on(data.get("resting_face"), source),
            info={key: value for key, value in data.items() if key not in ENSEMBLE_KEYS})

    @staticmethod
    def _prior(prior: object, n_classes: int, source: str) -> tuple[tuple[float, ...] | None, float]:
        if not isinstance(prior, dict):
            raise SpecError(f"{source}: prior must be an object {{\"class_prior\": [...], \"strength\": s}}, "
                            f"not {_short(prior)}")
        if unknown := sorted(set(prior) - {"class_prior", "strength"}):
            raise SpecError(f"{source}: prior has unknown key(s) {', '.join(map(repr, unknown))} "
                            "(known: 'class_prior', 'strength')")
        strength = _number(prior.get("strength", 0.0), "prior.strength", source, 0.0, 1.0)
        values = prior.get("class_prior")
        if values is None:
            return None, strength
        if (not isinstance(values, list) or len(values) != n_classes
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values)):
            raise SpecError(f"{source}: prior.class_prior must list {n_classes} class frequencies (>= 0), "
                            f"not {_short(values)}")
        return tuple(float(v) for v in values), strength

    @classmethod
    def read(cls, path: str | Path) -> EnsembleSpec:
        """The ensemble file at ``path``, checked (``read_json_object``, then ``from_dict``);
        UserError / SpecError naming the file otherwise. No model is loaded."""
        return cls.from_dict(read_json_object(path, "ensemble file"), str(path))

    def cards_folder(self, path: str | Path) -> Path:
        """Where the member cards of the file at ``path`` are: its own folder, or the package's
        weights (``WEIGHTS_DIR``) for ``"weights": "shipped"``."""
        return WEIGHTS_DIR if self.weights == "shipped" else Path(path).parent

    def member_flip_tta(self, member: MemberSpec) -> bool:
        """Whether ``member`` averages with mirrored faces: its own ``flip_tta``, else the file's."""
        return self.flip_tta if member.flip_tta is None else member.flip_tta

    def to_dict(self) -> dict:
        """The JSON form ``from_dict`` reads back to an equal spec (``info``'s keys included; of
        ``resting_face``, its ``spread`` and ``measured_on``)."""
        data: dict[str, Any] = {"format": self.format}
        if self.classes is not None:
            data["classes"] = list(self.classes)
        data["members"] = [member.to_dict() for member in self.members]
        data["prior"] = {**({"class_prior": list(self.class_prior)} if self.class_prior is not None else {}),
                         "strength": self.prior_strength}
        if self.flip_tta:
            data["flip_tta"] = True
        if self.weights is not None:
            data["weights"] = self.weights
        if self.calibration is not None:
            data["calibration"] = self.calibration.to_dict()
        if self.resting_spread is not None:
            data["resting_face"] = {"spread": self.resting_spread.tolist(),
                                    **({"measured_on": self.resting_measured_on} if self.resting_measured_on else {})}
        return {**data, **self.info}


def check_ensemble_file(path: str | Path) -> None:
    """Everything ``Ensemble.load`` reads, checked without loading a model: the file
    (``EnsembleSpec.read``), each member's card and model file (``resolve_member``). Raises
    UserError (or its SpecError) naming the file and what is wrong."""
    path = Path(path)
    spec = EnsembleSpec.read(path)
    for member in spec.members:
        resolve_member(spec.cards_folder(path) / member.card, member.variant)


def _measured_on(entry: object, source: str) -> str | None:
    """The ``measured_on`` note of a ``resting_face`` entry (None: none); SpecError unless text."""
    note = entry.get("measured_on") if isinstance(entry, dict) else None
    if note is not None and not isinstance(note, str):
        raise SpecError(f"{source}: resting_face.measured_on must be text, not {_short(note)}")
    return note


def read_resting_spread(config: dict, n_classes: int, source: str) -> np.ndarray | None:
    """The ensemble file's ``resting_face.spread``: (C,) positive float64, or None where it records
    none; SpecError naming ``source`` for a damaged one."""
    entry = config.get("resting_face")
    if entry is None:
        return None
    try:
        spread = np.asarray(entry["spread"], np.float64)
    except (KeyError, TypeError, ValueError):
        spread = None
    if spread is None or spread.shape != (n_classes,) or not (spread > 0).all():
        raise SpecError(f"{source}: a damaged resting_face entry (expected a spread of {n_classes} positive numbers)")
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
    """Calibrated soft voting of exported members, then the chosen class prior.

    ``Ensemble(members, spec)``: the loaded ``members`` and the ensemble file's contents as an
    ``EnsembleSpec`` (its ``members`` entries may be left out: the members are given loaded; None:
    an empty spec); ``Ensemble.load`` reads a file. Attributes: ``classes`` (the members' class
    names, all equal), ``class_prior`` (the training class prior, a list of C floats, or None when
    neither the file nor a card records one), ``default_prior_strength``, ``calibration``,
    ``resting_spread``, ``spec`` and ``config`` (its plain dict, as the server reports it). Raises
    UserError for no members, members that disagree on the classes, weights that are all 0, and
    SpecError for a spec whose ``classes`` are not the cards' or whose prior or resting face does
    not fit them. A plain dict for ``spec`` (or ``config=``) is deprecated (``DEPRECATED``)."""

    def __init__(self, members: list[Member], spec: EnsembleSpec | dict | None = None, *,
                 config: EnsembleSpec | dict | None = None):
        if not members:
            raise UserError("an ensemble needs at least one member")
        classes = {m.classifier.classes for m in members}
        if len(classes) != 1:
            raise UserError("members disagree on the classes")
        check_weights([m.weight for m in members])
        self.members = members
        self.classes: tuple[str, ...] = classes.pop()
        if isinstance(config, EnsembleSpec):  # the former keyword holding a spec
            spec, config = config, None
        if isinstance(spec, dict) or config is not None:
            warn_deprecated("Ensemble(members, config)")
            spec = EnsembleSpec.from_dict(config if config is not None else spec, "ensemble file",
                                          members_required=False)
        self.spec: EnsembleSpec = spec or EnsembleSpec(members=())
        if self.spec.classes is not None and self.spec.classes != self.classes:
            raise SpecError(f"ensemble file: classes {', '.join(self.spec.classes)} are not its members' cards' "
                            f"({', '.join(self.classes)})")
        cards = [m.classifier.class_prior for m in members if m.classifier.class_prior is not None]
        self.class_prior: list[float] | None = (list(self.spec.class_prior) if self.spec.class_prior is not None
                                                else cards[0] if cards else None)
        if self.class_prior is not None and len(self.class_prior) != len(self.classes):
            raise SpecError(f"ensemble file: a class prior of {len(self.class_prior)} classes for "
                            f"{len(self.classes)} classes")
        self.default_prior_strength = self.spec.prior_strength
        self.calibration: Calibration | None = self.spec.calibration
        self.resting_spread = self.spec.resting_spread
        self._member_digests: dict[str, str] | None = None
        self._profile_maps: dict[Path, ProfileMap | None] = {}  # by file; None: none fits these members
        if self.resting_spread is not None and self.resting_spread.shape != (len(self.classes),):
            raise SpecError(f"ensemble file: a damaged resting_face entry (expected a spread of "
                            f"{len(self.classes)} positive numbers)")

    @property
    def config(self) -> dict:
        """The ensemble file's contents as a plain dict (``spec.to_dict()``: what the server reports)."""
        return self.spec.to_dict()

    def prior_strength(self, value: str | float | None = None) -> float:
        """The prior strength ``value`` names (``ferplus``, ``uniform`` or a number in [0, 1];
        ``fer_ensemble.prior.parse_strength``); None gives the ensemble file's default. UserError
        (a ValueError) for another value, and for a non-zero strength when no class prior is
        recorded."""
        strength = self.default_prior_strength if value is None else parse_strength(value)
        if strength and self.class_prior is None:
            raise UserError("this ensemble's cards record no class prior to adjust")
        return strength

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> Ensemble:
        """Read the ensemble file at ``path`` (``EnsembleSpec.read``: the whole file is checked
        before any model is loaded) and load its members, their cards found relative to it (or in
        the package's weights); ``threads`` bounds each member's ONNX Runtime. UserError /
        SpecError naming the file for a missing or damaged file, card or model."""
        path = Path(path)
        spec = EnsembleSpec.read(path)
        folder = spec.cards_folder(path)
        members = [
            Member(OnnxClassifier(folder / entry.card, entry.variant, threads=threads),
                   entry.temperature, entry.weight, spec.member_flip_tta(entry))
            for entry in spec.members
        ]
        return cls(members, spec)

    def with_calibration(self, calibration: Calibration | None) -> Ensemble:
        """A new ensemble that reads faces through ``calibration`` (None: none) and otherwise as
        this one: the members and their ONNX Runtime sessions are shared, this one is not changed
        (so recognizers, apps and server threads that share it keep their answers)."""
        twin = copy.copy(self)
        twin.calibration = calibration
        return twin

    @property
    def name(self) -> str:
        """``ensemble(member+member...)``, the members' card names in file order."""
        return "ensemble(" + "+".join(m.classifier.name for m in self.members) + ")"

    def native_probabilities(self, faces, batch_size: int = 256) -> np.ndarray:
        """(N, C) float32 probabilities under FER+'s prior for a sequence of N face crops (gray
        (H, W) or BGR (H, W, 3) uint8, any size): the members' weighted soft vote, in batches of
        ``batch_size``; (0, C) for none. The calibration, if the ensemble has one, is applied by
        ``answer``, not here: a resting face is read from these uncalibrated probabilities."""
        return self.read_faces(faces, batch_size, embeddings=False)[0]

    @property
    def embedding_size(self) -> int | None:
        """D of ``read_faces``' embeddings (the members' sizes added up); None when a member has no
        ``embedding`` output (an export older than 2026-12-06)."""
        sizes = [m.classifier.embedding_size for m in self.members]
        return None if None in sizes else sum(s for s in sizes if s)

    def read_faces(self, faces, batch_size: int = 256, embeddings: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``native_probabilities`` (before any calibration: ``answer`` applies it) and, from the same
        pass, the faces' (N, D) float32 embeddings:
        each member's (``member_outputs``: unit length, mirrored where the member reads mirrored
        faces) side by side in member order, divided by the square root of the member count so
        each row has unit length. None for the embeddings when not asked for or when a member has
        none (``embedding_size``)."""
        size = self.embedding_size
        embeddings = embeddings and size is not None
        if len(faces) == 0:
            return (np.zeros((0, len(self.classes)), np.float32),
                    np.zeros((0, size or 0), np.float32) if embeddings else None)
        chunks, embedded = [], []
        total_weight = sum(m.weight for m in self.members)
        for start in range(0, len(faces), batch_size):
            part = faces[start : start + batch_size]
            outputs = [member_outputs(m, part, embeddings) for m in self.members]
            chunks.append(sum(m.weight * probs for m, (probs, _) in zip(self.members, outputs)) / total_weight)
            if embeddings:
                embedded.append(np.concatenate([e for _, e in outputs], axis=1) / np.sqrt(len(outputs)))
        native = np.concatenate(chunks).astype(np.float32)
        return native, (np.concatenate(embedded).astype(np.float32) if embeddings else None)

    def answer(self, native: np.ndarray, prior_strength: str | float | None = None,
               resting_face: RestingFace | None = None, *, prior: str | float | None = None,
               profile: Profile | None = None, embeddings: np.ndarray | None = None,
               blendshapes: np.ndarray | None = None) -> np.ndarray:
        """The answer, (N, C) float32 rows summing to one, for (N, C) ``native_probabilities``:
        through the ensemble's calibration if it has one, read relative to ``resting_face`` when
        given (with a calibration too: ``compose_relative``), under the prior strength ``prior_strength``
        names (None: the ensemble file's default), then through the person's ``profile`` when
        given (with the same faces' (N, D) ``embeddings`` from ``read_faces``). The faces' (N, 51)
        ``blendshapes``, when read (NaN rows for none), go to a calibration and a profile fitted
        with them (``Calibration.blendshapes``, ``fer_ensemble.runtime.profile.blend``). UserError for a bad strength (``prior_strength``) and for a profile without
        embeddings or made by another ensemble. ``prior=`` is the deprecated name of
        ``prior_strength=`` (a DeprecationWarning)."""
        strength = self.prior_strength(renamed_keyword(prior, prior_strength, "prior", "prior_strength"))
        calibrated = native if self.calibration is None else self.calibration.apply(native, blendshapes)
        answer = adjust_probabilities(calibrated, self.class_prior, strength).astype(np.float32)
        if resting_face is not None:
            relative = adjust_probabilities(resting_face.apply(native), self.class_prior, strength)
            answer = (relative if self.calibration is None else compose_relative(
                relative, answer, self.plain_answer(native, strength))).astype(np.float32)
        if profile is None:
            return answer
        self.check_profile(profile)
        if embeddings is None:
            raise UserError("a profile needs the faces' embeddings (Ensemble.read_faces)")
        return blend(answer, embeddings, profile, blendshapes)

    def plain_answer(self, native: np.ndarray, prior_strength: str | float | None = None) -> np.ndarray:
        """The answer to (N, C) ``native_probabilities`` without the calibration, a resting face or a
        profile, under ``prior_strength`` (None: the file's default): what a face is judged calm by
        (``stream.calm_faces``, whose threshold was chosen on such answers). (N, C) float32."""
        return adjust_probabilities(native, self.class_prior, self.prior_strength(prior_strength)).astype(np.float32)

    @property
    def member_names(self) -> tuple[str, ...]:
        """The members' card names, in file order (what a profile records)."""
        return tuple(m.classifier.name for m in self.members)

    def check_profile(self, profile: Profile) -> None:
        """ProfileError unless ``profile`` was made with this ensemble's members' embeddings."""
        profile.check_fits(self.member_names, self.embedding_size)

    def profile(self, embeddings: np.ndarray, labels, **options) -> Profile:
        """A person's ``Profile`` from (N, D) ``read_faces`` embeddings of their faces and the N class
        indices, with this ensemble's ``profile_map`` folded in (and, given the faces' ``blendshapes``,
        its ``blendshape_map``; ``profile_map=None``: neither); ``options`` go to ``Profile.fit`` (``c``, ``weight``, ``profile_map``,
        ``map_weight``, ``blendshapes``, ``blendshape_map``). ProfileError when the members give no
        embeddings or scikit-learn is missing."""
        self.require_embeddings()
        no_map = "profile_map" in options and options["profile_map"] is None
        options.setdefault("profile_map", self.profile_map)
        if options.get("blendshapes") is not None:  # no map asked for: none for the blendshapes either
            options.setdefault("blendshape_map", None if no_map else self.blendshape_map)
        return Profile.fit(embeddings, labels, members=self.member_names, **options)

    @property
    def member_digests(self) -> dict[str, str]:
        """Each member's ONNX file's SHA-256 by card name (what a ``ProfileMap`` records)."""
        if self._member_digests is None:
            self._member_digests = {m.classifier.name: file_digest(m.classifier.model_path) for m in self.members}
        return self._member_digests

    @property
    def profile_map(self) -> ProfileMap | None:
        """The shipped ``ProfileMap`` when it was fitted with these very member files, else None
        (profiles are then the person's own logistic regression alone)."""
        return self._shipped_map(PROFILE_MAP)

    @property
    def blendshape_map(self) -> ProfileMap | None:
        """The shipped ``ProfileMap`` of embeddings with blendshapes (``PROFILE_MAP_BLENDSHAPES``)
        when it was fitted with these very member files, else None."""
        return self._shipped_map(PROFILE_MAP_BLENDSHAPES)

    def _shipped_map(self, path: Path) -> ProfileMap | None:
        if path not in self._profile_maps:
            found = ProfileMap.load(path) if path.is_file() else None
            self._profile_maps[path] = found if found is not None and found.members == self.member_digests else None
        return self._profile_maps[path]

    def require_embeddings(self) -> int:
        """``embedding_size``; ProfileError when a member has no embedding output (profiles need it)."""
        if self.embedding_size is None:
            raise ProfileError("this ensemble's members have no embedding output (exported before "
                               "2026-12-06): profiles need it")
        return self.embedding_size

    def resting_face(self, native: np.ndarray, **options) -> RestingFace:
        """A person's resting face from the (N, C) ``native_probabilities`` of their neutral
        face(s); ``options`` go to ``RestingFace`` (method and its parameters). ValueError for no
        faces. The spread is the ensemble file's ``resting_face.spread`` (what ``fit-ensemble``
        measured on FER+ Valid's neutral faces), if it records one. Without a recorded class prior,
        equal priors stand in (the answers are then under them)."""
        class_prior = (self.class_prior if self.class_prior is not None
                       else np.full(len(self.classes), 1 / len(self.classes)))
        options.setdefault("spread", self.resting_spread)
        return RestingFace.from_probabilities(native, class_prior, **options)

    def predict_proba(self, faces, batch_size: int = 256, prior_strength: str | float | None = None,
                      resting_face: RestingFace | None = None, *, prior: str | float | None = None) -> np.ndarray:
        """Ensemble probabilities, (N, C) float32 in ``classes`` order with rows summing to one,
        for a sequence of N face crops (each a gray (H, W) or BGR (H, W, 3) uint8 array of any
        size, framed as ``crop_faces`` frames them), in batches of ``batch_size``; (0, C) for
        none. Under the prior strength ``prior_strength`` names (None: the ensemble file's
        default), relative to ``resting_face`` when given. UserError for a bad strength, before
        any work. ``prior=`` is the deprecated name of ``prior_strength=`` (a DeprecationWarning)."""
        strength = self.prior_strength(renamed_keyword(prior, prior_strength, "prior", "prior_strength"))
        return self.answer(self.native_probabilities(faces, batch_size), strength, resting_face)
