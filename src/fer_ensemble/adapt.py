"""Fit a calibration to a user's labelled faces, and measure it by cross-validation (``adapt``).

The ensemble's eight log-probabilities (under FER+'s prior) of each labelled face are the
features; a multinomial logistic regression on them is fitted with balanced class weights (each
class present counts equally, so a class with few labelled faces is not given up) and an L2
penalty that pulls the map towards *no change*, the identity. The class biases are not penalised,
as in plain logistic regression: they carry the class balance of the user's setting, which has no
reason to be FER+'s (on taiwan-posed and on FER+ Valid alike, penalising them towards FER+'s prior
divided out scored lower; docs/evaluate.md has the comparison). Candidates, from the most
constrained up:

- ``bias``: class biases only (weights fixed to the identity);
- ``linear``: the full (K, C) map and biases, map penalty 0.01, 1e-3, 1e-4 or 1e-5 per face.

The candidate is chosen by cross-validation on the balanced log-loss (ties: macro recall), a
smoother criterion than macro recall over a few hundred faces (inside each outer fold when
measuring, so the reported figures never saw their own test faces); folds are grouped (no
person on both sides) when groups are given. SciPy's L-BFGS does the fitting, scikit-learn makes
the folds (the ``adapt`` extra). Source of the method: multinomial logistic regression on a
classifier's log-probabilities is Platt scaling's multi-class form ("matrix scaling", Guo et al.
2017, "On Calibration of Modern Neural Networks", section 4.2).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.labelled import Scores, score_predictions
from fer_ensemble.prior import adjust_probabilities
from fer_ensemble.runtime.calibration import Calibration, log_probabilities, softmax_rows


@dataclass(frozen=True)
class Candidate:
    """One form of calibration: ``kind`` "bias" or "linear", with the L2 ``penalty`` per face that
    pulls a linear map towards the identity (a bias-only form has no map: 0) and ``bias_penalty``,
    the one that pulls the biases towards FER+'s prior divided out (0: free, the default; the
    earlier design penalised both alike, kept to compare in ``scripts/calibration_study.py``)."""

    kind: str
    penalty: float = 0.0
    bias_penalty: float = 0.0

    def __str__(self) -> str:
        text = f"{self.kind} (penalty {self.penalty:g})" if self.kind == "linear" else self.kind
        return text + (f", bias penalty {self.bias_penalty:g}" if self.bias_penalty else "")


CANDIDATES = (Candidate("bias"), Candidate("linear", 0.01), Candidate("linear", 1e-3),
              Candidate("linear", 1e-4), Candidate("linear", 1e-5))
"""The forms ``adapt`` chooses among by cross-validation, from the most constrained up."""
FEW_GROUPS_CANDIDATE = CANDIDATES[1]
"""Used when too few groups are left to choose by cross-validation: the most constrained linear map."""


FIT_THREADS = 1
"""BLAS threads in a fit (threadpoolctl): its products are a few hundred faces by 8 classes, too
small to share out, and thousands of them wait for idle cores when OpenBLAS spreads each over all:
on a busy machine taiwan-posed's adapt took 7.5 minutes with OpenBLAS's own thread count and 49 s
with one, writing the same calibration."""


def balanced_weights(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per-face weights that give each class of ``classes`` the same total weight; mean 1."""
    counts = np.array([(labels == c).sum() for c in classes], np.float64)
    per_class = len(labels) / (len(classes) * counts)
    return per_class[np.searchsorted(classes, labels)]


def fit_calibration(probabilities: np.ndarray, labels: np.ndarray, prior: Sequence[float],
                    candidate: Candidate = FEW_GROUPS_CANDIDATE, about: dict | None = None,
                    blendshapes: np.ndarray | None = None) -> Calibration:
    """The calibration of form ``candidate`` fitted to (N, C) probabilities under FER+'s ``prior``
    and their (N,) class indices; classes with no face in ``labels`` are left unfitted. With the
    faces' (N, 51) ``blendshapes`` (every row read), the map also weighs them (its weights (C, C +
    51), those of the blendshapes pulled towards 0 as the rest towards the identity): the form of
    ``Calibration.blendshapes``. BLAS runs on one thread meanwhile (``FIT_THREADS``)."""
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    x = log_probabilities(probabilities)
    n_classes = x.shape[1]
    if blendshapes is not None:
        if not np.isfinite(blendshapes).all():
            raise ValueError("fit_calibration takes the blendshapes of faces that have them: no NaN row")
        x = np.concatenate([x, np.asarray(blendshapes, np.float64)], axis=1)
    n_features = x.shape[1]
    present = np.unique(labels)
    k = len(present)
    target = np.searchsorted(present, labels)
    weight = balanced_weights(labels, present)
    log_prior = log_probabilities(np.asarray(prior)[None])[0][present]
    identity = np.eye(n_classes, n_features)[present]  # (K, F): class j's own log-probability
    linear = candidate.kind == "linear"

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        delta_w = theta[: k * n_features].reshape(k, n_features) if linear else np.zeros((k, n_features))
        return identity + delta_w, theta[-k:]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, delta_b = unpack(theta)
        p = softmax_rows(x @ w.T + (delta_b - log_prior))
        nll = -(weight * np.log(np.clip(p[np.arange(len(x)), target], 1e-300, None))).sum() / len(x)
        grad_z = p.copy()
        grad_z[np.arange(len(x)), target] -= 1.0
        grad_z *= weight[:, None] / len(x)
        grad_b = grad_z.sum(axis=0) + 2 * candidate.bias_penalty * delta_b
        value = nll + candidate.bias_penalty * (delta_b @ delta_b)
        if not linear:
            return value, grad_b
        delta_w = w - identity
        grad_w = grad_z.T @ x + 2 * candidate.penalty * delta_w
        return value + candidate.penalty * (delta_w**2).sum(), np.concatenate([grad_w.ravel(), grad_b])

    size = k * n_features + k if linear else k
    with threadpool_limits(limits=FIT_THREADS, user_api="blas"):
        theta = minimize(loss, np.zeros(size), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
    w, delta_b = unpack(theta)
    weights, bias = np.eye(n_classes, n_features), np.zeros(n_classes)
    weights[present] = w
    # fitted under equal priors (delta_b - log_prior), answered under FER+'s (+ log_prior): delta_b
    bias[present] = delta_b
    fitted = np.zeros(n_classes, bool)
    fitted[present] = True
    return Calibration(weights, bias, fitted, candidate.kind, tuple(EMOTIONS[:n_classes]), about or {})


def balanced_log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present of their faces' mean -log p(true class)."""
    picked = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None))
    return float(np.mean([picked[labels == c].mean() for c in np.unique(labels)]))


def folds(labels: np.ndarray, groups: Sequence[str] | None, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: grouped when ``groups`` is given (no group on both sides),
    else stratified by class; at most ``n_folds`` and at most one per group. [] when fewer than two.
    A class with fewer faces than folds is left out of some test folds, silently (scikit-learn's
    warning about it is ``few_labels``' one line in ``adapt``)."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    index = np.arange(len(labels))
    if groups is not None:
        n = min(n_folds, len(set(groups)))
        return list(GroupKFold(n_splits=n).split(index, labels, groups)) if n >= 2 else []
    n = min(n_folds, int(np.bincount(labels).max()))
    if n < 2:
        return []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        return list(StratifiedKFold(n_splits=n, shuffle=True, random_state=0).split(index, labels))


def few_labels(labels: np.ndarray, groups: Sequence[str] | None, n_folds: int) -> str | None:
    """One line saying why cross-validation on these (N,) class indices of the labelled faces says
    little, or None: without ``groups``, a class with fewer faces than ``n_folds`` (some folds test
    none of it, and photos of one person may sit on both sides of a fold)."""
    if groups is not None or len(labels) == 0:
        return None
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    present = np.flatnonzero(counts)
    scarce = [c for c in present if counts[c] < n_folds]
    if not scarce:
        return None
    named = ", ".join(f"{counts[c]} {EMOTIONS[c]}" for c in scarce)
    return (f"few labels: {named} face(s), fewer than the {n_folds} folds, so some folds test none and the "
            "figures say little; label more photos, of several people, and give --group-by their person column")


CRITERIA = ("log-loss", "macro-recall")
"""How ``choose_candidate`` ranks the candidates: the balanced log-loss (the default), or the macro
recall under the answering prior (the earlier design, kept to compare); the other breaks ties."""


def choose_candidate(probabilities: np.ndarray, labels: np.ndarray, groups: Sequence[str] | None,
                     prior: Sequence[float], strength: float, n_folds: int = 5,
                     candidates: Sequence[Candidate] = CANDIDATES, criterion: str = "log-loss",
                     blendshapes: np.ndarray | None = None) -> Candidate:
    """The one of ``candidates`` of lowest cross-validated balanced log-loss (ties: the better macro
    recall under the prior ``strength``; ``criterion="macro-recall"`` ranks the other way round);
    ``FEW_GROUPS_CANDIDATE`` when the faces cannot be split in two. With the faces' (N, 51)
    ``blendshapes`` (every row read), the forms fitted with them. ValueError for another criterion."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, not {criterion!r}")
    splits = folds(labels, groups, n_folds)
    if not splits:
        return FEW_GROUPS_CANDIDATE
    scores = []
    for candidate in candidates:
        held_out = np.zeros_like(probabilities, np.float64)
        for train, test in splits:
            shapes = None if blendshapes is None else blendshapes[train]
            calibration = fit_calibration(probabilities[train], labels[train], prior, candidate, blendshapes=shapes)
            held_out[test] = calibration.apply(probabilities[test], None if blendshapes is None else blendshapes[test])
        predictions = adjust_probabilities(held_out, prior, strength).argmax(axis=1)
        score = (-balanced_log_loss(held_out, labels), score_predictions(labels, predictions).macro_recall)
        scores.append(score if criterion == "log-loss" else score[::-1])
    return candidates[max(range(len(candidates)), key=scores.__getitem__)]


@dataclass
class AdaptReport:
    """Cross-validated scores before and after calibration, on the same folds and images."""

    n_images: int
    n_faces: int
    n_folds: int
    grouped: bool
    cv_before: Scores
    cv_after: Scores
    candidate: Candidate  # what the final fit on every face uses (chosen on all of them)
    unfitted: list[str]  # classes with no labelled face: they keep their uncalibrated answers
    blendshapes_candidate: Candidate | None = None  # with blendshapes: the form of the part fitted with them
    cv_after_plain: Scores | None = None  # with blendshapes: the same folds read without them (no --geometry)
    n_blendshapes: int = 0  # faces whose blendshapes were read

    @property
    def improves(self) -> bool:
        """Better macro recall without a lower accuracy, or better accuracy without a lower macro
        recall; with blendshapes, so read both with and without them."""
        return all(_better(self.cv_before, after) for after in (self.cv_after, self.cv_after_plain) if after is not None)


def _better(before: Scores, after: Scores) -> bool:
    return (after.macro_recall >= before.macro_recall and after.accuracy >= before.accuracy
            and (after.macro_recall > before.macro_recall or after.accuracy > before.accuracy))


def cross_validate(probabilities: np.ndarray, found: np.ndarray, labels: np.ndarray,
                   groups: Sequence[str] | None, prior: Sequence[float], strength: float,
                   n_folds: int = 5, candidates: Sequence[Candidate] = CANDIDATES,
                   criterion: str = "log-loss", blendshapes: np.ndarray | None = None) -> AdaptReport:
    """Nested cross-validation of ``adapt`` on (N, C) probabilities under FER+'s ``prior``
    (``found``: (N,) bool, faces found; the others count as wrong, as in ``evaluate``), answered
    under the prior ``strength``; ``candidates`` and ``criterion`` as ``choose_candidate`` takes
    them. With the faces' (N, 51) ``blendshapes`` (NaN rows: none read), each fold also fits the
    part read with them (``Calibration.blendshapes``, on the training faces that have them) and
    scores its test faces as ``Calibration.apply`` reads them. ValueError when the faces cannot be
    split into two folds."""
    faces = np.flatnonzero(found)
    face_groups = None if groups is None else [groups[int(i)] for i in faces]
    splits = folds(labels[faces], face_groups, n_folds)
    if not splits:
        raise ValueError("too few labelled faces (or groups) to cross-validate: at least two of one "
                         "class, or two groups, are needed")
    x, y = probabilities[faces], labels[faces]
    shapes = None if blendshapes is None else np.asarray(blendshapes, np.float64)[faces]
    held_out, held_plain = np.zeros_like(x, np.float32), np.zeros_like(x, np.float32)
    for train, test in splits:
        inner_groups = None if face_groups is None else [face_groups[i] for i in train]
        candidate = choose_candidate(x[train], y[train], inner_groups, prior, strength, n_folds, candidates, criterion)
        calibration = fit_calibration(x[train], y[train], prior, candidate)
        held_plain[test] = calibration.apply(x[test])
        if shapes is not None and (form := blendshapes_candidate(x[train], y[train], inner_groups, prior, strength,
                                                                 n_folds, candidates, criterion, shapes[train])):
            calibration.blendshapes = fit_blendshapes_part(x[train], y[train], prior, form, shapes[train])
        held_out[test] = calibration.apply(x[test], None if shapes is None else shapes[test])
    before, after, plain = np.full(len(labels), -1), np.full(len(labels), -1), np.full(len(labels), -1)
    before[faces] = adjust_probabilities(x, prior, strength).argmax(axis=1)
    after[faces] = adjust_probabilities(held_out, prior, strength).argmax(axis=1)
    plain[faces] = adjust_probabilities(held_plain, prior, strength).argmax(axis=1)
    unfitted = [EMOTIONS[c] for c in range(probabilities.shape[1]) if not (y == c).any()]
    chosen = None if shapes is None else blendshapes_candidate(x, y, face_groups, prior, strength, n_folds,
                                                                candidates, criterion, shapes)
    return AdaptReport(len(labels), len(faces), len(splits), groups is not None,
                       score_predictions(labels, before), score_predictions(labels, after),
                       choose_candidate(x, y, face_groups, prior, strength, n_folds, candidates, criterion), unfitted,
                       chosen, None if shapes is None else score_predictions(labels, plain),
                       0 if shapes is None else int(np.isfinite(shapes).all(axis=1).sum()))


def blendshapes_candidate(probabilities: np.ndarray, labels: np.ndarray, groups: Sequence[str] | None,
                          prior: Sequence[float], strength: float, n_folds: int, candidates: Sequence[Candidate],
                          criterion: str, blendshapes: np.ndarray) -> Candidate | None:
    """The form ``choose_candidate`` chooses among ``candidates`` for the part of a calibration read
    with the blendshapes (``Calibration.blendshapes``), on the faces whose (N, 51) ``blendshapes``
    were read; None when those faces show fewer than two classes (no such part)."""
    read = np.isfinite(blendshapes).all(axis=1)
    if len(np.unique(labels[read])) < 2:
        return None
    kept = None if groups is None else [g for g, r in zip(groups, read) if r]
    return choose_candidate(probabilities[read], labels[read], kept, prior, strength, n_folds, candidates, criterion,
                            blendshapes[read])


def fit_blendshapes_part(probabilities: np.ndarray, labels: np.ndarray, prior: Sequence[float], candidate: Candidate,
                         blendshapes: np.ndarray) -> Calibration:
    """The part of a calibration read with the blendshapes (``Calibration.blendshapes``), of form
    ``candidate`` (``blendshapes_candidate``), fitted on the faces whose (N, 51) ``blendshapes`` were read."""
    read = np.isfinite(blendshapes).all(axis=1)
    return fit_calibration(probabilities[read], labels[read], prior, candidate, blendshapes=blendshapes[read])
