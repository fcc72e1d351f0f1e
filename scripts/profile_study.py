#!/usr/bin/env python3
"""Which personal-profile design reads a person best: measured on taiwan-posed, chosen on some
performers, scored on the others.

Each performer's photos are split at random into an enrolment set (K photos per expression) and
the photos scored (the rest), ``--draws`` times. Designs compared (docs/accuracy.md, "Personal
profiles", keeps the table this prints):

- ``ensemble``: no profile (the shipped ensemble's answer under the default prior);
- ``prototypes``: softmax of cos(face, prototype) / tau over the enrolled classes, a prototype being
  the mean embedding of a class's enrolled faces; ``+ensemble``: plus a * log p_ensemble (p: the
  ensemble's answer under the default prior); the other classes keep the ensemble's answer;
- ``logistic``: the shipped design, ``fer_ensemble.runtime.profile``: a per-person multinomial
  logistic regression on the embeddings (scikit-learn, penalty 1/C), ``+ensemble`` as above;
- ``logistic+aug``: the same with each enrolment photo also cropped a little wider, narrower and
  shifted (five framings), as augmentation;
- ``logistic+aug+map``: the shipped design: the same plus ``a`` times the shipped ``ProfileMap``
  (``runtime.profile``) centred on the person enrolling, its taiwan-posed part refitted on the
  *other* performers' photos (as ``evaluate --enrol`` does), the classes not enrolled read through it.

``a``, ``tau`` and ``C`` are chosen per fold on the other fold's performers (two folds by
performer: the first seven, P01-P13, and the other eight, P15-P29), so no performer's photos choose the numbers they are scored with.

    python scripts/profile_study.py --labels ../shared/data/taiwan-posed/labels.csv \\
        --images ../shared/data/taiwan-posed/images --cache /tmp/taiwan-embeddings.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.constants import EMOTIONS  # noqa: E402
from fer_ensemble.labelled import face_outputs, read_labelled_images  # noqa: E402
from fer_ensemble.prior import adjust_probabilities  # noqa: E402
from fer_ensemble.runtime.detection import FACE_FRAMING  # noqa: E402
from fer_ensemble.runtime.detectors import create_detector  # noqa: E402
from fer_ensemble.runtime.profile import ENROL_FRAMINGS, Profile, ProfileMap, blend  # noqa: E402
from fer_ensemble.runtime.recognizer import load_ensemble  # noqa: E402

GRID_A = (0.0, 0.5, 1.0)
GRID_TAU = (0.01, 0.03, 0.1)
GRID_C = (10.0, 100.0, 1000.0)
GRID_MAP = (1.0, 2.0, 3.0)  # the map's weight a
DESIGNS = ["ensemble", "prototypes", "prototypes+ensemble", "logistic", "logistic+ensemble", "logistic+aug",
           "logistic+aug+map"]
_MAPS: dict[str, ProfileMap] = {}


def held_out_map(s: dict, person: str) -> ProfileMap:
    """The shipped profile map with its part that learnt from these photos refitted on every
    performer but ``person`` (all framings), as ``evaluate --enrol`` does; cached."""
    if person not in _MAPS:
        shipped = ProfileMap.load()
        index = next(i for i, p in enumerate(shipped.parts) if set(p.fitted_on.get("groups", [])) ==
                     set(s["performers"].tolist()))
        usable = s["found"]
        frames = s["embeddings"].shape[1]
        _MAPS[person] = shipped.held_out(index, s["embeddings"][usable].reshape(-1, s["embeddings"].shape[-1]),
                                         np.repeat(s["labels"][usable], frames),
                                         np.repeat(s["performers"][usable], frames), person)
    return _MAPS[person]


def read_set(labels: str, images: str | None, cache: Path | None) -> dict[str, np.ndarray]:
    """Per photo: the native probabilities (N, C) of its own framing and the embeddings (N, F, D) of
    its ``ENROL_FRAMINGS`` crops (``labelled.face_outputs``, as ``evaluate --enrol`` reads them),
    found (N,), labels (N,), performers (N,)."""
    if cache and cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    data = read_labelled_images(labels, images, "performer")
    ensemble = load_ensemble()
    native, embeddings, found, _ = face_outputs(ensemble.read_faces, data, create_detector(), FACE_FRAMING["margin"],
                                             FACE_FRAMING["offset"], ENROL_FRAMINGS)
    result = {"native": native, "embeddings": embeddings, "found": found, "labels": data.labels,
              "performers": np.array(data.groups), "class_prior": np.array(ensemble.class_prior),
              "strength": np.array(ensemble.default_prior_strength)}
    if cache:
        np.savez_compressed(cache, **result)
    return result


def draws(labels: np.ndarray, mine: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Enrolment and scored masks within ``mine``: k photos per class the person has more than k of."""
    enrol = np.zeros(len(labels), bool)
    for c in np.unique(labels[mine]):
        idx = np.flatnonzero(mine & (labels == c))
        if len(idx) > k:
            enrol[rng.choice(idx, k, replace=False)] = True
    return enrol, mine & ~enrol


def answers(design: str, s: dict, enrol: np.ndarray, scored: np.ndarray, a: float, t: float) -> np.ndarray:
    """The (n_scored, C) answers of ``design`` for one person's scored photos (``t``: the prototypes'
    temperature, or the logistic regression's ``C``)."""
    prior, strength = s["class_prior"], float(s["strength"])
    plain = adjust_probabilities(s["native"][scored], prior, strength)
    if design == "ensemble":
        return plain
    framings = slice(None) if "+aug" in design else slice(0, 1)
    enrol_emb = s["embeddings"][enrol][:, framings].reshape(-1, s["embeddings"].shape[-1])
    enrol_lab = np.repeat(s["labels"][enrol], s["embeddings"][enrol][:, framings].shape[1])
    faces = s["embeddings"][scored, 0]
    if design.endswith("+map"):
        profile_map = held_out_map(s, str(s["performers"][enrol][0]))
        return blend(plain, faces, Profile.fit(enrol_emb, enrol_lab, profile_map=profile_map, map_weight=a))
    if design.startswith("logistic"):
        return blend(plain, faces, Profile.fit(enrol_emb, enrol_lab, c=t, weight=a))
    classes = np.unique(enrol_lab)  # prototypes: cosine to each class's mean embedding
    prototypes = np.stack([enrol_emb[enrol_lab == c].mean(axis=0) for c in classes])
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    scores = faces @ prototypes.T / t + a * np.log(np.maximum(plain[:, classes], 1e-12))
    shares = np.exp(scores - scores.max(axis=1, keepdims=True))
    out = plain.copy()
    out[:, classes] = plain[:, classes].sum(axis=1, keepdims=True) * shares / shares.sum(axis=1, keepdims=True)
    return out


def score(design: str, s: dict, people: list[str], k: int, n_draws: int, a: float, tau: float,
          seed: int = 0) -> tuple[float, np.ndarray]:
    """Accuracy and per-class recall over ``people``'s scored photos, pooled over the draws."""
    rng = np.random.default_rng(seed)
    truth, guess = [], []
    for _ in range(n_draws):
        for person in people:
            mine = (s["performers"] == person) & s["found"]
            enrol, scored = draws(s["labels"], mine, k, rng)
            if not scored.any():
                continue
            truth.append(s["labels"][scored])
            guess.append(answers(design, s, enrol, scored, a, tau).argmax(axis=1))
    t, g = np.concatenate(truth), np.concatenate(guess)
    recall = np.array([(g[t == c] == c).mean() if (t == c).any() else np.nan for c in range(len(EMOTIONS))])
    return float((t == g).mean()), recall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True)
    parser.add_argument("--images", default=None)
    parser.add_argument("--cache", type=Path, default=None, help="npz of the faces' outputs, reused when present")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--enrol", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--designs", nargs="+", default=DESIGNS, choices=DESIGNS, help="the designs compared")
    args = parser.parse_args()
    s = read_set(args.labels, args.images, args.cache)
    performers = sorted(set(s["performers"].tolist()))
    folds = [performers[: len(performers) // 2], performers[len(performers) // 2:]]
    shown = [EMOTIONS.index(e) for e in ("anger", "disgust", "fear", "sadness")]
    print(f"taiwan-posed, {len(performers)} performers, {args.draws} draws; a and tau chosen on the other fold")
    print("| K | design | chosen (a, tau or C) per fold | accuracy | " + " | ".join(EMOTIONS[c] for c in shown) + " |")
    print("|---|---|---|---|" + "---|" * len(shown))
    for k in args.enrol:
        for design in args.designs:
            grid = [(0.0, 1.0)] if design == "ensemble" else [(a, 0.0) for a in GRID_MAP] \
                if design.endswith("+map") else [
                (a, t) for a in ((0.0,) if "+ensemble" not in design else GRID_A[1:])
                for t in (GRID_C if design.startswith("logistic") else GRID_TAU)]
            truth_acc, recalls, chosen = [], [], []
            for fold, other in ((folds[0], folds[1]), (folds[1], folds[0])):
                best = max(grid, key=lambda p: score(design, s, other, k, 3, *p, seed=1)[0])
                accuracy, recall = score(design, s, fold, k, args.draws, *best)
                n = sum(((s["performers"] == p) & s["found"]).sum() for p in fold)
                truth_acc.append((accuracy, n))
                recalls.append((recall, n))
                chosen.append(best)
            total = sum(n for _, n in truth_acc)
            accuracy = sum(a * n for a, n in truth_acc) / total
            recall = sum(r * n for r, n in recalls) / total
            print(f"| {k} | {design} | {', '.join(f'({a:g}, {t:g})' for a, t in chosen)} | {100 * accuracy:.1f} | "
                  + " | ".join(f"{100 * recall[c]:.0f}" for c in shown) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
