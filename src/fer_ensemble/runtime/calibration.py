"""Calibrations on top of the ensemble's answers (NumPy only at run time).

Two corrections for faces the training data did not prepare the networks for:

- ``Calibration``: a small multinomial logistic regression on the ensemble's eight log-probabilities
  (under FER+'s prior), fitted on a user's labelled faces by ``fer-ensemble adapt``
  (``fer_ensemble.adapt``) or shipped as a named preset. It maps each face's log-probabilities
  ``l`` (shape (C,)) to ``z = W l + b`` for the classes it was fitted on and leaves the others as
  they were, then answers again under FER+'s prior, so the usual class prior (``--prior``) still
  applies after it.
- ``RestingFace``: one person's resting face as the reference for their expressions. A single
  photo of a stranger carries no reference for how their face looks at rest: a face that reads as
  a little sad at rest reads sad in every photo. Given the log-probabilities of that person's
  neutral face, each later face of theirs is read relative to it (``RestingFace.apply``).

Both are tiny (an (8, 8) matrix and an (8,) vector): applying them costs microseconds per face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_ensemble.constants import BLENDSHAPES, EMOTIONS
from fer_ensemble.errors import UserError, checked_format

CALIBRATION_FORMAT = "fer-ensemble/calibration/v1"
"""The ``format`` of the calibrations this version writes (``adapt``) and reads."""
LOG_FLOOR = np.log(1e-6)
"""Log-probabilities are clipped at log(1e-6): a class the networks rule out keeps a finite value."""


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Natural log of (N, C) probabilities, clipped below at ``LOG_FLOOR``; float64."""
    return np.maximum(np.log(np.clip(np.asarray(probabilities, np.float64), 1e-300, None)), LOG_FLOOR)


def softmax_rows(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) scores ``z`` (the row maximum subtracted first): (N, C), rows
    summing to one, in the dtype of ``z``."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


MAX_WEIGHT = 1e4
"""The largest weight or bias a calibration file may hold: a fitted one stays far below; a larger
one (a damaged file) would overflow the scores its softmax exponentiates."""


@dataclass
class Calibration:
    """``z = l @ weights.T + bias`` on the classes in ``fitted`` (a (C,) bool mask), then softmax
    within them, scaled to the probability the uncalibrated answer gave those classes together;
    classes outside ``fitted`` keep their uncalibrated probabilities.

    ``weights`` is (C, C) float64, ``bias`` (C,) float64 (entries of unfitted classes unused);
    ``l`` is the log-probabilities under FER+'s prior and so is the answer: the bias holds FER+'s
    prior over the fitted classes (``fer_ensemble.adapt`` fits with balanced class weights, then adds
    it), so a prior strength divides out exactly what it does without a calibration.
    """

    weights: np.ndarray
    bias: np.ndarray
    fitted: np.ndarray
    kind: str = "linear"  # "bias": weights are the identity, only the class biases were fitted
    classes: tuple[str, ...] = EMOTIONS
    about: dict = field(default_factory=dict)  # what it was fitted on, and its cross-validated figures
    blendshapes: Calibration | None = None
    """The same calibration fitted with the faces' 51 blendshapes beside the log-probabilities (its
    ``weights`` (C, C + 51)): ``apply`` reads a face through it when given the face's blendshapes
    (``adapt --geometry``); None: fitted without."""

    def apply(self, probabilities: np.ndarray, blendshapes: np.ndarray | None = None) -> np.ndarray:
        """Calibrated (N, C) probabilities (float32) for (N, C) probabilities under FER+'s prior;
        given the faces' (N, 51) ``blendshapes`` (NaN rows: none read), a face that has them is read
        through ``self.blendshapes`` when the calibration holds one."""
        probabilities = np.asarray(probabilities)
        if len(probabilities) == 0:
            return probabilities
        if self.weights.shape[1] > self.weights.shape[0]:  # a blendshapes part itself: every face has them
            extra = None if blendshapes is None else np.asarray(blendshapes, np.float64)
            if extra is None or extra.shape != (len(probabilities), len(BLENDSHAPES)) or not np.isfinite(extra).all():
                raise ValueError(f"this calibration reads (N, {len(BLENDSHAPES)}) blendshapes of every face")
            return self._apply(probabilities, extra)
        result = self._apply(probabilities, None)
        if self.blendshapes is not None and blendshapes is not None:
            blendshapes = np.asarray(blendshapes, np.float64).reshape(len(probabilities), -1)
            read = np.isfinite(blendshapes).all(axis=1)
            if read.any():
                result[read] = self.blendshapes._apply(probabilities[read], blendshapes[read])
        return result

    def _apply(self, probabilities: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
        """``apply`` through this calibration's own weights, ``extra`` features (N, E) beside the log-probabilities."""
        fitted = self.fitted
        features = log_probabilities(probabilities)
        if extra is not None:
            features = np.concatenate([features, extra], axis=1)
        inside = softmax_rows(features @ self.weights[fitted].T + self.bias[fitted])
        result = np.array(probabilities, np.float64)
        mass = result[:, fitted].sum(axis=1, keepdims=True)
        result[:, fitted] = inside * mass
        return (result / result.sum(axis=1, keepdims=True)).astype(np.float32)

    def to_dict(self) -> dict:
        """The JSON form ``from_dict`` reads (``format`` ``CALIBRATION_FORMAT``; weights and bias
        rounded to 8 decimals; ``fitted`` as class names)."""
        return {"format": CALIBRATION_FORMAT, "kind": self.kind, "classes": list(self.classes),
                "fitted": [c for c, f in zip(self.classes, self.fitted) if f],
                "weights": np.round(self.weights, 8).tolist(), "bias": np.round(self.bias, 8).tolist(),
                "about": self.about,
                **({"blendshapes": self.blendshapes.to_dict()} if self.blendshapes is not None else {})}

    @classmethod
    def from_dict(cls, data: object, source: str = "calibration", extra: bool = False) -> Calibration:
        """A calibration from its JSON form; UserError naming ``source`` when it is not one.
        ``extra``: the form of a ``blendshapes`` part (weights (C, C + 51))."""
        data = checked_format(data, CALIBRATION_FORMAT, source, "calibration")
        try:
            classes = tuple(data["classes"])
            weights = np.asarray(data["weights"], np.float64)
            bias = np.asarray(data["bias"], np.float64)
            fitted = np.array([c in data["fitted"] for c in classes])
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{source}: a damaged calibration ({error})") from None
        n = len(classes)
        width = n + (len(BLENDSHAPES) if extra else 0)
        if (weights.shape != (n, width) or bias.shape != (n,) or not fitted.any() or not np.isfinite(weights).all()
                or not np.isfinite(bias).all() or np.abs(weights).max() > MAX_WEIGHT or np.abs(bias).max() > MAX_WEIGHT):
            raise UserError(f"{source}: a damaged calibration (weights {weights.shape}, bias {bias.shape} "
                            f"for {n} classes)")
        calibration = cls(weights, bias, fitted, str(data.get("kind", "linear")), classes, dict(data.get("about", {})))
        if not extra and data.get("blendshapes") is not None:
            calibration.blendshapes = cls.from_dict(data["blendshapes"], source, extra=True)
            if calibration.blendshapes.classes != classes:
                raise UserError(f"{source}: a damaged calibration (its blendshapes part)")
        return calibration


NEUTRAL_FLOOR = 0.4
"""``compose_relative``'s default: a composed answer's neutral is at least this fraction of the more
neutral of its two parts' (chosen by ``scripts/calibration_study.py compose``, docs/accuracy.md)."""


def compose_relative(relative: np.ndarray, calibrated: np.ndarray, plain: np.ndarray,
                     neutral_floor: float = NEUTRAL_FLOOR) -> np.ndarray:
    """One answer from a resting face's and a calibration's answers for the same (N, C) faces (each
    (N, C) rows summing to one, under the same prior; ``plain``: the answer with neither): how
    neutral a face is comes from both, as a product of experts (``relative * calibrated / plain``,
    normalised: each adds its own evidence to the plain answer's) but never below ``neutral_floor``
    (0 to 1) times the more neutral of the two answers, and the rest of the probability is split
    among the expressions as the calibration splits it. (N, C) float64 rows summing to one;
    ValueError for a floor outside [0, 1].

    Chosen on taiwan-posed with the ``posed`` preset (docs/accuracy.md, "Calibrations, resting faces
    and profiles together"): every class within 5 points of the better of the two parts alone, with
    neutral references, calm references and enrolled ones, where the resting face applied to
    calibrated answers (the former order) read sadness at 2 %. The floor is there because both parts
    take probability from neutral and the product takes it twice: without it, a calm face read
    against its own calm face fell to 79.5 % neutral, against the calibration's 94.9 %. It bounds
    the answer by each part, so a resting face that adds nothing (``relative`` equal to ``plain``)
    gives the calibration's answer only where the calibration's neutral is at least the floor times
    the plain answer's; elsewhere neutral is raised to that."""
    if not 0.0 <= neutral_floor <= 1.0:
        raise ValueError(f"neutral_floor must be between 0 and 1, got {neutral_floor}")
    product = relative * calibrated / np.maximum(plain, 1e-12)
    product /= product.sum(axis=1, keepdims=True)
    neutral = np.maximum(product[:, NEUTRAL], neutral_floor * np.maximum(relative[:, NEUTRAL], calibrated[:, NEUTRAL]))
    answer = np.array(calibrated, np.float64)
    expressions = np.arange(answer.shape[1]) != NEUTRAL
    total = answer[:, expressions].sum(axis=1, keepdims=True)
    share = np.where(total > 0, answer[:, expressions] / np.where(total > 0, total, 1.0), 1.0 / expressions.sum())
    answer[:, expressions] = share * (1.0 - neutral[:, None])
    answer[:, NEUTRAL] = neutral
    return answer


RESTING_FACE_METHODS = ("standardized", "partial", "clipped")
"""How a face is read relative to its person's resting face (``RestingFace``)."""
NEUTRAL = EMOTIONS.index("neutral")
"""The index of the neutral class in ``EMOTIONS`` (what ``standardized`` scores by its threshold)."""


def resting_spread(neutral_probabilities: np.ndarray) -> np.ndarray:
    """How much each class's log-probability varies among faces at rest: the (C,) standard
    deviation over the (N, C) probabilities (under FER+'s prior) of faces labelled neutral (the
    shipped ensemble's: FER+ Valid's neutral faces, recorded by ``fit-ensemble`` in its file as
    ``resting_face.spread``). ValueError for fewer than two faces."""
    neutral_probabilities = np.asarray(neutral_probabilities)
    if neutral_probabilities.ndim != 2 or len(neutral_probabilities) < 2:
        raise ValueError(f"a spread needs at least two neutral faces, got shape {neutral_probabilities.shape}")
    return np.maximum(log_probabilities(neutral_probabilities).std(axis=0), 1e-3)


@dataclass
class RestingFace:
    """One person's resting face: the mean (C,) float64 log-probabilities ``reference`` of their
    neutral face(s), under FER+'s ``class_prior`` ((C,) probabilities), before any calibration, as
    the faces it is applied to (``Ensemble.answer`` composes it with a calibration: ``compose_relative``). ValueError for an unknown ``method``, a ``strength`` outside (0, 1]
    or a ``spread`` that is not (C,) positive numbers.

    ``method``, as compared on taiwan-posed by ``scripts/calibration_study.py resting`` (the
    table in docs/accuracy.md; ``l`` is a face's log-probabilities, ``r`` the reference, ``log prior`` FER+'s):

    - ``standardized`` (the default, kept by that comparison): each expression scores how far its
      log-probability rose above the resting face, in units of ``spread ** exponent`` (``spread``:
      how much that log-probability varies among faces at rest, ``resting_spread``; a class that
      varies a lot at rest, like sadness, needs a larger rise), plus ``own_evidence`` times the
      face's own evidence ``l - log prior``; neutral scores ``threshold`` plus its own evidence
      likewise, so a face reads neutral unless some expression rose past the threshold. The
      scores, times ``sharpness``, are the answer's log-odds over FER+'s prior. Without a
      ``spread`` (an ensemble file that records none), every class counts as spread 1.
    - ``partial``: subtract ``strength`` of the reference's evidence ``r - log prior`` (1: the
      plain log-probability difference; it forgets what a neutral face is: a neutral face minus
      itself is no evidence of anything);
    - ``clipped``: subtract ``strength`` of only the evidence the resting face shows above its own
      mean over the classes, leaving every class it does not show alone.

    The answer is again under FER+'s prior, so ``--prior`` applies after it as without a reference.
    """

    reference: np.ndarray
    class_prior: np.ndarray
    method: str = "standardized"
    spread: np.ndarray | None = None
    # chosen together on taiwan-posed (the default detector's faces) by scripts/calibration_study.py resting
    exponent: float = 0.5
    threshold: float = 0.75
    own_evidence: float = 0.1
    sharpness: float = 4.0
    strength: float = 0.5  # partial and clipped only

    def __post_init__(self) -> None:
        if self.method not in RESTING_FACE_METHODS:
            raise ValueError(f"unknown resting-face method {self.method!r}; known: {', '.join(RESTING_FACE_METHODS)}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"resting-face strength must lie in (0, 1], not {self.strength}")
        if self.spread is not None and (np.shape(self.spread) != np.shape(self.reference)
                                        or not (np.asarray(self.spread) > 0).all()):
            raise ValueError(f"a resting-face spread must be {np.shape(self.reference)} positive numbers")

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, class_prior: np.ndarray | list[float],
                           **options) -> RestingFace:
        """The resting face of (N, C) probabilities (under FER+'s ``class_prior``, a (C,) vector) of
        one person's neutral faces, N >= 1; ``options``: the other fields. ValueError for no faces
        (and as the class for bad options)."""
        probabilities = np.asarray(probabilities)
        if probabilities.ndim != 2 or len(probabilities) == 0:
            raise ValueError(f"a resting face needs the probabilities of at least one face, got shape "
                             f"{probabilities.shape}")
        return cls(log_probabilities(probabilities).mean(axis=0), np.asarray(class_prior, np.float64), **options)

    def log_prior(self) -> np.ndarray:
        """The natural log of ``class_prior``, clipped at ``LOG_FLOOR``: (C,) float64."""
        return log_probabilities(self.class_prior[None])[0]

    def offset(self) -> np.ndarray:
        """What ``partial`` and ``clipped`` subtract from a face's log-probabilities: (C,) float64."""
        evidence = self.reference - self.log_prior()
        if self.method == "clipped":
            evidence = np.maximum(evidence - evidence.mean(), 0.0)
        return self.strength * evidence

    def scores(self, log_probs: np.ndarray) -> np.ndarray:
        """``standardized``'s (N, C) scores for (N, C) log-probabilities (float64)."""
        spread = np.ones_like(self.reference) if self.spread is None else np.asarray(self.spread, np.float64)
        scores = (log_probs - self.reference) / spread**self.exponent
        scores[:, NEUTRAL] = self.threshold
        return scores + self.own_evidence * (log_probs - self.log_prior())

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, C) probabilities read relative to this resting face (float32, rows sum to one)."""
        probabilities = np.asarray(probabilities)
        if len(probabilities) == 0:
            return probabilities
        log_probs = log_probabilities(probabilities)
        if self.method == "standardized":
            return softmax_rows(self.sharpness * self.scores(log_probs) + self.log_prior()).astype(np.float32)
        return softmax_rows(log_probs - self.offset()).astype(np.float32)
