#!/usr/bin/env python3
"""Fit the ``ProfileMap`` that personal profiles use: expressions relative to each person's own
face, learnt from other people's labelled faces, one part per set of people (docs/accuracy.md,
"Personal profiles").

The shipped ``src/fer_ensemble/weights/profile-map.json`` was made with

    python scripts/fit_profile_map.py \\
        --part ../shared/data/taiwan-posed/labels.csv ../shared/data/taiwan-posed/images performer photos 3 1 \\
        --part ../shared/data/ckplus48/sequences.csv ../shared/data/ckplus48/images subject crops 1 0.5 \\
        --out src/fer_ensemble/weights/profile-map.json

and ``src/fer_ensemble/weights/profile-map-blendshapes.json`` (what profiles enrolled with their
faces' blendshapes use: ``Profile.blendshapes``) with the same two parts and ``--blendshapes``:
a part of photos then reads each face's 51 blendshapes too (``GeometryReader``, on the detector's
box) and learns from the embeddings with them appended (``framed_with_blendshapes``; photos whose face the
landmarker misses are left out); a part of crops (too small for the landmarker) learns from the
embeddings alone and gives the blendshapes no weight (``MapPart.padded``).

A part of ``photos`` reads each photo's largest face at the enrolment framings
(``ENROL_FRAMINGS``), as ``enrol`` reads a person's photos; a part of ``crops`` reads the images as
face crops. People with one class only are left out (they have no centre to be read against).
Each part records its labels file's SHA-256 and its people's names, so ``evaluate --enrol`` on
those photos refits that part without the person scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.constants import BLENDSHAPES  # noqa: E402
from fer_ensemble.errors import file_digest  # noqa: E402
from fer_ensemble.labelled import face_outputs, read_labelled_images  # noqa: E402
from fer_ensemble.runtime.detection import FACE_FRAMING  # noqa: E402
from fer_ensemble.runtime.detectors import create_detector  # noqa: E402
from fer_ensemble.runtime.geometry import GeometryReader  # noqa: E402
from fer_ensemble.runtime.profile import ENROL_FRAMINGS, MapPart, ProfileMap, framed_with_blendshapes  # noqa: E402
from fer_ensemble.runtime.recognizer import load_ensemble  # noqa: E402


def fit_part(ensemble, labels: str, images: str, group_by: str, kind: str, c: float, weight: float,
             geometry: GeometryReader | None = None) -> MapPart:
    """One ``MapPart`` from a labelled set (``kind``: photos or crops); with ``geometry``, of the
    embeddings with the blendshapes appended (padded with zero weights for crops)."""
    data = read_labelled_images(labels, images, group_by)
    if kind == "crops":
        _, embeddings, found, _ = face_outputs(ensemble.read_faces, data)
    else:
        _, embeddings, found, shapes = face_outputs(ensemble.read_faces, data, create_detector(),
                                                    FACE_FRAMING["margin"], FACE_FRAMING["offset"], ENROL_FRAMINGS,
                                                    geometry)
        if shapes is not None:
            found &= np.isfinite(shapes).all(axis=1)
            embeddings = framed_with_blendshapes(embeddings, shapes)
    groups = np.array(data.groups)
    several = np.array([len(set(data.labels[groups == g].tolist())) > 1 for g in groups])
    keep = found & several
    frames = embeddings.shape[1]
    fitted_on = {"labels": file_digest(labels), "labels_file": f"{Path(labels).parent.name}/{Path(labels).name}",
                 "kind": kind, "groups": sorted(set(groups[keep].tolist())), "photos": int(keep.sum())}
    part = MapPart.fit(embeddings[keep].reshape(-1, embeddings.shape[2]), np.repeat(data.labels[keep], frames),
                       np.repeat(groups[keep], frames), c, weight, fitted_on)
    print(f"{fitted_on['labels_file']}: {len(part.classes)} classes from {keep.sum()} of {len(data)} images, "
          f"{len(fitted_on['groups'])} people; c={c:g}, weight {weight:g}")
    if geometry is not None and kind == "crops":
        part = part.padded(len(BLENDSHAPES))
    return part


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs=6, action="append", required=True,
                        metavar=("LABELS", "IMAGES", "GROUP_BY", "KIND", "C", "WEIGHT"),
                        help="one part: a labels CSV, its images folder, the column naming each person, "
                             "photos or crops, the inverse penalty and the part's weight")
    parser.add_argument("--blendshapes", action="store_true",
                        help="a map of the embeddings with each face's blendshapes appended (photos parts)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    ensemble = load_ensemble()
    geometry = GeometryReader() if args.blendshapes else None
    parts = []
    for labels, images, group_by, kind, c, weight in args.part:
        if kind not in ("photos", "crops"):
            parser.error(f"--part KIND is photos or crops, not {kind!r}")
        parts.append(fit_part(ensemble, labels, images, group_by, kind, float(c), float(weight), geometry))
    ProfileMap(parts, ensemble.member_digests).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
