"""Class priors, decided on purpose (NumPy only).

A model trained on FER+ answers under FER+'s class prior: a third of its training votes say
"neutral", under one percent say "disgust" or "contempt". Bayes' rule moves calibrated
probabilities to another prior ``q``: ``p_q(y|x) ~ p(y|x) * q(y) / prior(y)``. The *strength* ``s``
picks ``q ~ prior^(1 - s)``: 0 keeps FER+'s prior (best accuracy on FER+ itself), 1 makes every
emotion equally likely a priori (best macro recall: no emotion is given up for being rare).
The result still sums to one and is calibrated under ``q`` when the input is under ``prior``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fer_ensemble.errors import UserError

PRIOR_NAMES = {"ferplus": 0.0, "uniform": 1.0}
"""Preset names of a prior *strength* (what ``--prior`` and ``prior_strength=`` take besides a
number): ``ferplus`` (0) keeps the training prior, ``uniform`` (1) divides it out. Not a class
prior: the class-prior vector is ``class_prior`` everywhere."""


def parse_strength(value: str | float) -> float:
    """The prior strength ``value`` names: a preset of ``PRIOR_NAMES`` (``ferplus``, ``uniform``)
    or a number (or numeric string) in [0, 1], as a float. UserError (a ValueError) otherwise."""
    if isinstance(value, str) and value in PRIOR_NAMES:
        return PRIOR_NAMES[value]
    try:
        strength = float(value)
    except (TypeError, ValueError):
        raise UserError(f"prior must be 'ferplus', 'uniform' or a number in [0, 1], not {value!r}") from None
    if not 0.0 <= strength <= 1.0:
        raise UserError(f"prior strength must lie in [0, 1], not {strength}")
    return strength


def adjust_probabilities(probabilities: np.ndarray, class_prior: np.ndarray | Sequence[float] | None,
                         strength: float) -> np.ndarray:
    """(N, C) ``probabilities`` (under ``class_prior``, a (C,) vector of class frequencies) moved
    to the prior ``q ~ class_prior ** (1 - strength)``: ``class_prior ** strength`` divided out
    (clipped below at 1e-6) and each row renormalised; the dtype of ``probabilities``. Returned
    unchanged when ``class_prior`` is None, ``strength`` is 0 or there are no rows."""
    probabilities = np.asarray(probabilities)
    if class_prior is None or strength == 0.0 or len(probabilities) == 0:
        return probabilities
    weights = np.clip(np.asarray(class_prior, np.float64), 1e-6, None) ** -strength
    adjusted = probabilities * weights
    return (adjusted / adjusted.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def class_prior(targets: np.ndarray) -> np.ndarray:
    """A training set's class prior under its label mode: the mean of its (N, C) target
    distributions (one-hot or vote fractions), a (C,) float64 vector summing to one."""
    prior = np.asarray(targets, np.float64).mean(axis=0)
    return prior / prior.sum()


def class_sample_weights(targets: np.ndarray, power: float) -> np.ndarray:
    """Per-image draw weights count(class)^-power for class-aware sampling, the class being each
    target's arg-max (0: natural frequencies, 0.5: square root, 1: balanced classes): (N,) float64,
    not normalised (a class with no image counts as one)."""
    labels = np.asarray(targets).argmax(axis=1)
    counts = np.bincount(labels, minlength=np.asarray(targets).shape[1]).astype(np.float64)
    return np.clip(counts, 1, None)[labels] ** -power


def sampled_prior(targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The class prior a network sees when the (N, C) ``targets`` are drawn with the (N,)
    ``weights`` (``class_sample_weights``): a (C,) float64 vector summing to one."""
    prior = (np.asarray(targets, np.float64) * weights[:, None]).sum(axis=0)
    return prior / prior.sum()


def training_priors(targets: np.ndarray, balance_sampling: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """(the training data's class prior, the class prior class-aware sampling showed the network,
    or None without it): (C,) float64 vectors for (N, C) ``targets``, as the trainer records them
    in the model card (``class_prior``, ``output.sampled_prior``)."""
    seen = sampled_prior(targets, class_sample_weights(targets, balance_sampling)) if balance_sampling else None
    return class_prior(targets), seen


def prior_logit_offset(class_prior: np.ndarray | list[float] | None, logit_adjust: float = 0.0,
                       sampled_prior: np.ndarray | list[float] | None = None) -> np.ndarray | None:
    """What a network's logits need added to answer under its training data's ``class_prior``
    ((C,) vector): ``logit_adjust * log class_prior`` after the logit-adjusted loss, and
    ``log(class_prior / sampled_prior)`` after class-aware sampling (the network then saw the class
    prior ``sampled_prior``). A (C,) float32 vector; None when nothing is to be added."""
    if class_prior is None or (not logit_adjust and sampled_prior is None):
        return None
    log_prior = np.log(np.clip(np.asarray(class_prior, np.float64), 1e-6, None))
    offset = logit_adjust * log_prior
    if sampled_prior is not None:
        offset = offset + log_prior - np.log(np.clip(np.asarray(sampled_prior, np.float64), 1e-6, None))
    return offset.astype(np.float32)
