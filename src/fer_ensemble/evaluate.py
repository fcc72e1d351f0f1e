"""Scoring a predictor (anything with ``predict_proba``) on FER+ (official majority protocol), under
the class prior asked for. The command, which also loads the predictor, is ``apps/evaluate.py``."""

from __future__ import annotations

from fer_ensemble.data import LabelledSplit
from fer_ensemble.errors import UserError
from fer_ensemble.metrics import EvaluationReport, ProbabilityFn, evaluate_probabilities
from fer_ensemble.prior import adjust_probabilities


def evaluate_on_split(predict_proba: ProbabilityFn, split: LabelledSplit) -> EvaluationReport:
    """Score ``predict_proba`` on a split's images against its majority labels."""
    if split.mode != "majority":
        raise ValueError("evaluation uses the majority labels; load the split with mode='majority'")
    return evaluate_probabilities(predict_proba(split.images), split.labels)


def with_prior(predictor, prior: float | None) -> ProbabilityFn:
    """``predictor.predict_proba`` under the prior strength ``prior`` (None: an ensemble file's
    default, FER+'s own prior for a single member)."""
    from fer_ensemble.runtime.ensemble import Ensemble

    if isinstance(predictor, Ensemble):
        predictor.prior_strength(prior)  # checks it before the first image
        return lambda faces: predictor.predict_proba(faces, prior_strength=prior)
    strength = prior or 0.0
    if strength and getattr(predictor, "class_prior", None) is None:
        raise UserError(f"{predictor.name} records no class prior to adjust")
    return lambda faces: adjust_probabilities(predictor.predict_proba(faces), predictor.class_prior, strength)
