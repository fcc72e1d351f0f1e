#!/usr/bin/env python3
"""Which personal-profile design reads a person best: measured on taiwan-posed, chosen on some
performers, scored on the others.

Each performer's photos are split at random into an enrolment set (K photos per expression) and
the photos scored (the rest), ``--draws`` times. Designs compared (docs/accuracy.md, "Personal
profiles", keeps the table this prints):

- ``ensemble``: no profile (the shipped ensemble's answer under the default prior);
- ``prototypes``: the nearest class prototype (mean embedding of the enrolled faces) by cosine;
- ``blend(a, tau)``: log p_ensemble * a + cos(face, prototype) / tau over the enrolled classes (p:
  the ensemble's answer under the default prior; the other classes keep theirs);
- ``blend+aug``: the same with each enrolment photo also cropped a little wider, narrower and
  shifted (five framings), as augmentation;
- ``logistic``: a small per-person logistic map on the embeddings (scikit-learn), the ensemble's
  log-probabilities added.

``a`` and ``tau`` are chosen per fold on the other fold's performers (two folds by performer:
P01-P08 and P09-P15), so no performer's photos choose the numbers they are scored with.

    python scripts/profile_study.py --labels ../shared/data/taiwan-posed/labels.csv \\
        --images ../shared/data/taiwan-posed/images --cache /tmp/taiwan-embeddings.npz
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.constants import EMOTIONS  # noqa: E402
from fer_ensemble.labelled import read_labelled_images  # noqa: E402
from fer_ensemble.media import read_image  # noqa: E402
from fer_ensemble.preprocess import to_gray  # noqa: E402
from fer_ensemble.prior import adjust_probabilities  # noqa: E402
from fer_ensemble.runtime.detection import FACE_FRAMING, crop_faces, detect_faces  # noqa: E402
from fer_ensemble.runtime.detectors import create_detector  # noqa: E402
from fer_ensemble.runtime.profile import Profile, blend  # noqa: E402
from fer_ensemble.runtime.recognizer import load_ensemble  # noqa: E402

FRAMINGS = [(0.0, 0.0), (0.08, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05)]
"""(margin, offset) added to the apps' framing: the plain crop and four augmentations."""
GRID_A = (0.0, 0.5, 1.0)
GRID_TAU = (0.01, 0.03, 0.1)


def read_set(labels: str, images: str | None, cache: Path | None) -> dict[str, np.ndarray]:
    """Per photo and framing: native probabilities (N, F, C) and embeddings (N, F, D), found (N,),
    labels (N,), performers (N,)."""
    if cache and cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    data = read_labelled_images(labels, images, "performer")
    ensemble = load_ensemble()
    detector = create_detector()
    native = np.zeros((len(data), len(FRAMINGS), len(EMOTIONS)), np.float32)
    embeddings = np.zeros((len(data), len(FRAMINGS), ensemble.embedding_size or 0), np.float32)
    found = np.zeros(len(data), bool)
    for i, path in enumerate(data.paths):
        image = read_image(path)
        gray = to_gray(image)
        boxes = detect_faces(detector, image, gray)
        if not boxes:
            continue
        box = max(boxes, key=lambda b: b[2] * b[3])
        crops = [crop_faces(gray, [box], FACE_FRAMING["margin"] + m, FACE_FRAMING["offset"] + o)[0]
                 for m, o in FRAMINGS]
        native[i], embeddings[i] = ensemble.read_faces(crops)
        found[i] = True
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


def answers(design: str, s: dict, enrol: np.ndarray, scored: np.ndarray, a: float, tau: float) -> np.ndarray:
    """The (n_scored, C) answers of ``design`` for one person's scored photos."""
    prior, strength = s["class_prior"], float(s["strength"])
    native = s["native"][scored, 0]
    if design == "ensemble":
        return adjust_probabilities(native, prior, strength)
    framings = slice(None) if design.endswith("+aug") else slice(0, 1)
    enrol_emb = s["embeddings"][enrol][:, framings].reshape(-1, s["embeddings"].shape[-1])
    enrol_lab = np.repeat(s["labels"][enrol], s["embeddings"][enrol][:, framings].shape[1])
    if design == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=10.0, max_iter=500).fit(enrol_emb, enrol_lab)
        plain = adjust_probabilities(native, prior, strength)
        scores = np.full((scored.sum(), len(EMOTIONS)), -np.inf)
        scores[:, model.classes_] = model.decision_function(s["embeddings"][scored, 0]) + a * np.log(
            np.maximum(plain[:, model.classes_], 1e-6))
        return softmax_rows(scores)
    profile = Profile.from_embeddings(enrol_emb, enrol_lab, weight=a if design != "prototypes" else 0.0,
                                      temperature=tau)
    return blend(adjust_probabilities(native, prior, strength), s["embeddings"][scored, 0], profile)


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(axis=1, keepdims=True)


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
    args = parser.parse_args()
    s = read_set(args.labels, args.images, args.cache)
    performers = sorted(set(s["performers"].tolist()))
    folds = [performers[: len(performers) // 2], performers[len(performers) // 2:]]
    designs = ["ensemble", "prototypes", "blend", "blend+aug", "logistic"]
    shown = [EMOTIONS.index(e) for e in ("anger", "disgust", "fear", "sadness")]
    print(f"taiwan-posed, {len(performers)} performers, {args.draws} draws; a and tau chosen on the other fold")
    print("| K | design | chosen (a, tau) per fold | accuracy | " + " | ".join(EMOTIONS[c] for c in shown) + " |")
    print("|---|---|---|---|" + "---|" * len(shown))
    for k in args.enrol:
        for design in designs:
            grid = [(0.0, 1.0)] if design == "ensemble" else (
                [(0.0, t) for t in GRID_TAU] if design == "prototypes" else
                [(a, 0.0) for a in GRID_A] if design == "logistic" else list(itertools.product(GRID_A, GRID_TAU)))
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
