#!/usr/bin/env python3
"""Do MediaPipe's blendshapes help personal profiles? (the face geometry issue, item 4)

On taiwan-posed, by performer: each photo's largest face (the default detector, stills preset) is
read by ``GeometryReader`` for its 51 blendshapes; a profile is then fitted on the members'
embeddings with the blendshapes times ``alpha`` appended (0: the embeddings alone), helped by a
profile map of the same features learnt from the *other* performers only (taiwan-posed's part,
held out; no CK+48 part, whose 48-pixel crops are too small for the landmarker), as ``evaluate
--enrol`` scores: K photos per class enrolled, the rest scored, 10 draws. Prints accuracy and recall
per class for each ``alpha``::

    python scripts/geometry_study.py --labels ../shared/data/taiwan-posed/labels.csv \\
        --images ../shared/data/taiwan-posed/images --cache /tmp/taiwan.npz --alpha 0 0.5 1 2 3

``--cache`` is ``scripts/profile_study.py``'s (the embeddings), written when missing; the
blendshapes are cached beside it (``*.blendshapes.npy``). About 30 s per alpha and K once cached.

``--adapt`` asks the same of ``adapt``, a calibration fitted to other people's labels: a multinomial
logistic regression (scikit-learn's, each class weighed alike) on the ensemble's eight
log-probabilities (the plain answer, default prior), and on them with the blendshapes (times each
``--alpha`` but 0) appended, scored cross-validated by performer (5 folds, no performer on both
sides), its penalty ``C`` chosen among 0.1, 1 and 10 within each training fold (4 inner folds by
performer). Prints accuracy, macro recall and recall per class (7 classes) for each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_study import draws, read_set  # noqa: E402

from fer_ensemble.constants import EMOTIONS  # noqa: E402
from fer_ensemble.labelled import read_image, read_labelled_images  # noqa: E402
from fer_ensemble.preprocess import to_gray  # noqa: E402
from fer_ensemble.prior import adjust_probabilities  # noqa: E402
from fer_ensemble.runtime.detection import largest_face  # noqa: E402
from fer_ensemble.runtime.profile import MapPart, Profile, ProfileMap, blend  # noqa: E402
from fer_ensemble.runtime.recognizer import EmotionRecognizer  # noqa: E402


def blendshapes(labels: str, images: str | None, cache: Path | None) -> np.ndarray:
    """(N, 51) blendshapes of each photo's largest face (zeros where none is found or read)."""
    if cache is not None and cache.is_file():
        return np.load(cache)
    data = read_labelled_images(labels, images, "performer")
    recognizer = EmotionRecognizer(geometry=True)
    assert recognizer.geometry is not None
    result = np.zeros((len(data), 51), np.float32)
    for i, path in enumerate(data.paths):
        image = read_image(path)
        box = largest_face(recognizer.detector, image, to_gray(image))
        shape = recognizer.geometry.read(image, [box])[0] if box is not None else None
        if shape is not None:
            result[i] = list(shape.blendshapes.values())
    if cache is not None:
        np.save(cache, result)
    return result


def study(s: dict, shapes: np.ndarray, alpha: float, k: int, n_draws: int = 10) -> tuple[float, list[float]]:
    """Accuracy and per-class recall (percent) of profiles on embeddings + ``alpha`` x blendshapes."""
    from threadpoolctl import threadpool_limits

    embeddings, labels, people, found = s["embeddings"], s["labels"], s["performers"], s["found"]
    plain = adjust_probabilities(s["native"], s["class_prior"], float(s["strength"]))
    frames = embeddings.shape[1]
    features = embeddings if not alpha else np.concatenate(
        [embeddings, np.repeat(alpha * shapes[:, None, :], frames, axis=1)], axis=2)
    names = sorted(set(people.tolist()))
    truth, guess = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        maps = {}
        for person in names:
            others = (people != person) & found
            maps[person] = ProfileMap([MapPart.fit(features[others].reshape(-1, features.shape[-1]),
                                                   np.repeat(labels[others], frames), np.repeat(people[others], frames))],
                                      {})
        rng = np.random.default_rng(0)
        for _ in range(n_draws):
            for person in names:
                enrol, scored = draws(labels, (people == person) & found, k, rng)
                e, c = np.flatnonzero(enrol), np.flatnonzero(scored)
                profile = Profile.fit(features[e].reshape(-1, features.shape[-1]), np.repeat(labels[e], frames),
                                      profile_map=maps[person])
                truth.append(labels[c])
                guess.append(blend(plain[c], features[c, 0], profile).argmax(axis=1))
    t, g = np.concatenate(truth), np.concatenate(guess)
    return 100 * float((t == g).mean()), [100 * float((g[t == c] == c).mean()) for c in range(7)]


def adapt_study(s: dict, shapes: np.ndarray, alphas: list[float]) -> None:
    """``--adapt``: cross-validated calibrations on the log-probabilities, without and with the
    blendshapes (see the module's docstring); prints a table."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    labels, people = s["labels"], s["performers"]
    plain = adjust_probabilities(s["native"], s["class_prior"], float(s["strength"]))
    log_probs = np.log(np.maximum(plain, 1e-6))

    def fitted(x: np.ndarray, y: np.ndarray, c: float):
        return LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(x, y)

    def cross_validated(x: np.ndarray) -> np.ndarray:
        guess = np.zeros(len(labels), np.int64)
        for train, test in GroupKFold(5).split(x, labels, people):
            inner = list(GroupKFold(4).split(x[train], labels[train], people[train]))
            scores = {c: np.mean([(fitted(x[train][a], labels[train][a], c).predict(x[train][b])
                                   == labels[train][b]).mean() for a, b in inner]) for c in (0.1, 1.0, 10.0)}
            guess[test] = fitted(x[train], labels[train], max(scores, key=scores.get)).predict(x[test])
        return guess

    print("| features | accuracy | macro recall | " + " | ".join(EMOTIONS[:7]) + " |")
    print("|---" * 10 + "|")
    rows = [("none (the ensemble)", None), ("log-probabilities", log_probs)]
    rows += [(f"log-probabilities + {alpha:g} x blendshapes", np.hstack([log_probs, alpha * shapes]))
             for alpha in alphas if alpha]
    with threadpool_limits(limits=1, user_api="blas"):
        for name, x in rows:
            guess = plain.argmax(axis=1) if x is None else cross_validated(x)
            recall = [100 * float((guess[labels == c] == c).mean()) for c in range(7)]
            print(f"| {name} | {100 * float((guess == labels).mean()):.1f} | {np.mean(recall):.1f} | "
                  + " | ".join(f"{r:.1f}" for r in recall) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True)
    parser.add_argument("--images", default=None)
    parser.add_argument("--cache", type=Path, default=None, help="profile_study.py's npz of the faces' outputs")
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--enrol", type=int, nargs="+", default=[2])
    parser.add_argument("--adapt", action="store_true", help="the calibration study instead (see above)")
    args = parser.parse_args()
    s = read_set(args.labels, args.images, args.cache)
    shapes = blendshapes(args.labels, args.images,
                         args.cache.with_suffix(".blendshapes.npy") if args.cache else None)
    if args.adapt:
        adapt_study(s, shapes, args.alpha)
        return
    print("| K | alpha | accuracy | " + " | ".join(EMOTIONS[:7]) + " |")
    print("|---" * 10 + "|")
    for k in args.enrol:
        for alpha in args.alpha:
            accuracy, recall = study(s, shapes, alpha, k)
            print(f"| {k} | {alpha:g} | {accuracy:.1f} | " + " | ".join(f"{r:.1f}" for r in recall) + " |", flush=True)


if __name__ == "__main__":
    main()
