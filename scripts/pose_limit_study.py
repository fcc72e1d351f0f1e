#!/usr/bin/env python3
"""How far can a face turn before the ensemble stops reading it? (the face geometry issue, item 3)

FER+ Test's faces (FER2013's, gathered from the web: many are turned) are read twice: by the
shipped ensemble (its default prior, as the apps run it) and by ``GeometryReader`` for their head
pose (each 48 px face enlarged to 192 px, its box the whole crop). Accuracy against the majority
label is then printed by |yaw| and by |pitch| in 10-degree bins, with each bin's face count, and
the readable range ends where the first bin (of at least ``--min-faces`` faces) reads more than
``--drop`` points below the frontal bin (0-10 degrees), or where too few faces are left to tell::

    python scripts/pose_limit_study.py --data ../shared/data/ferplus --split valid test

Beyond that range a face's answer is not known to hold: ``geometry.YAW_LIMIT`` and
``PITCH_LIMIT`` are this script's figures, and a face past either is flagged ``turned``. About two
minutes on two cores. Faces the landmarks model does not find (presence below 0.5) are counted
apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.data.ferplus import load_labelled  # noqa: E402
from fer_ensemble.runtime.geometry import GeometryReader  # noqa: E402
from fer_ensemble.runtime.recognizer import load_ensemble  # noqa: E402

SIDE = 192
"""Each 48 px FER+ face is enlarged to this side for the landmarks model (its crop is 256 px)."""
BINS = tuple(range(0, 90, 10))


def poses(images: np.ndarray, reader: GeometryReader) -> np.ndarray:
    """(N, 2) |yaw| and |pitch| in degrees of each (48, 48) gray face; NaN where none is read."""
    result = np.full((len(images), 2), np.nan)
    box = (0, 0, SIDE, SIDE)
    for i, image in enumerate(images):
        big = cv2.cvtColor(cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
        [geometry] = reader.read(big, [box])
        if geometry is not None:
            result[i] = abs(geometry.pose[0]), abs(geometry.pose[1])
    return result


def table(angle: np.ndarray, correct: np.ndarray, name: str) -> list[tuple[int, int, float]]:
    """Prints and returns (bin start, faces, accuracy) per 10-degree bin of ``angle``."""
    rows = []
    print(f"\n| |{name}| (degrees) | faces | accuracy (%) |\n|---|---|---|")
    for low in BINS:
        inside = (angle >= low) & (angle < low + 10) if low < BINS[-1] else angle >= low
        if inside.any():
            rows.append((low, int(inside.sum()), float(correct[inside].mean())))
            label = f"{low}-{low + 10}" if low < BINS[-1] else f"{low}+"
            print(f"| {label} | {rows[-1][1]} | {100 * rows[-1][2]:.1f} |")
    return rows


def readable_up_to(rows: list[tuple[int, int, float]], drop: float, min_faces: int) -> int:
    """The upper edge in degrees of the run of bins from 0 that hold ``min_faces`` faces and read
    within ``drop`` (a fraction) of the first bin's accuracy."""
    edge = 0
    for low, faces, accuracy in rows:
        if low != edge or faces < min_faces or accuracy < rows[0][2] - drop:
            break
        edge = low + 10
    return edge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/ferplus", help="FER+ in Microsoft's layout")
    parser.add_argument("--split", nargs="+", default=["valid", "test"], choices=("valid", "test"),
                        help="FER+ splits, pooled (never Train: the members learnt it)")
    parser.add_argument("--drop", type=float, default=10.0,
                        help="points of accuracy below the frontal bin that end the readable range (default 10)")
    parser.add_argument("--min-faces", type=int, default=20,
                        help="a bin with fewer faces ends the range: too few to tell (default 20)")
    args = parser.parse_args()

    ensemble, reader = load_ensemble(), GeometryReader()
    correct, angles = [], []
    for name in args.split:
        split = load_labelled(args.data, name)
        correct.append(ensemble.predict_proba(split.images).argmax(axis=1) == split.labels)
        angles.append(poses(split.images, reader))
    correct, angles = np.concatenate(correct), np.concatenate(angles)
    read = ~np.isnan(angles[:, 0])
    print(f"FER+ {' + '.join(args.split)}: {len(correct)} faces, {int(read.sum())} read by the landmarks model "
          f"(accuracy {100 * correct[read].mean():.1f} %), {int((~read).sum())} not "
          f"(accuracy {100 * correct[~read].mean():.1f} %)")
    for column, name in ((0, "yaw"), (1, "pitch")):
        rows = table(angles[read, column], correct[read], name)
        edge = readable_up_to(rows, args.drop / 100, args.min_faces)
        print(f"\n{name}: readable up to {edge} degrees (bins of >= {args.min_faces} faces within "
              f"{args.drop:g} points of the frontal bin's {100 * rows[0][2]:.1f} %)")


if __name__ == "__main__":
    main()
