"""Write the benchmark's shared inputs as raw arrays that every peer can read without our package.

FER+ Test, official majority protocol, seven-class view (contempt images left out):
``faces.u8`` (N x 48 x 48 gray) and ``faces.json`` (labels in common.json's class order).
The group photos of ../shared/data/faces, decoded once: ``photos/<name>.rgb`` (H x W x 3 RGB)
and ``photos.json`` (sizes and the true face count), so that no system is timed on decoding.
With ``--ckplus48``, the same for CK+48's posed faces in ``<work>/ckplus48`` (seven-class view:
the contempt sequences left out; ``groups`` names each face's sequence), scored for accuracy only.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
from harness import CLASSES

from fer_ensemble.constants import CONTEMPT_INDEX, EMOTIONS
from fer_ensemble.data import load_labelled


def write_faces(data: Path, work: Path) -> int:
    test = load_labelled(data, "test", "majority")
    keep = test.labels != CONTEMPT_INDEX
    names = [EMOTIONS[i] for i in test.labels[keep]]
    labels = [CLASSES.index(name) for name in names]
    np.ascontiguousarray(test.images[keep], dtype=np.uint8).tofile(work / "faces.u8")
    meta = {"n": int(keep.sum()), "size": 48, "labels": labels, "n_test_majority": len(test)}
    (work / "faces.json").write_text(json.dumps(meta))
    return meta["n"]


def write_ckplus48(ckplus48: Path, work: Path) -> int:
    """CK+48's crops (48 px gray) without contempt, with each image's sequence for per-sequence votes."""
    work.mkdir(parents=True, exist_ok=True)
    with open(ckplus48 / "sequences.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] != "contempt"]
    faces = np.stack([cv2.imread(str(ckplus48 / "images" / r["file"]), cv2.IMREAD_GRAYSCALE) for r in rows])
    np.ascontiguousarray(faces, dtype=np.uint8).tofile(work / "faces.u8")
    meta = {"n": len(rows), "size": int(faces.shape[1]), "labels": [CLASSES.index(r["label"]) for r in rows],
            "groups": [f"{r['subject']}/{r['sequence']}" for r in rows], "set": "CK+48"}
    (work / "faces.json").write_text(json.dumps(meta))
    (work / "photos.json").write_text("[]")
    return meta["n"]


def write_photos(faces_dir: Path, work: Path, min_faces: int) -> list[dict]:
    (work / "photos").mkdir(exist_ok=True)
    photos = []
    with open(faces_dir / "SOURCES.csv", newline="") as f:
        for row in csv.DictReader(f):
            count = row["faces"].split()[0]
            if not count.isdigit() or int(count) < min_faces:
                continue
            bgr = cv2.imread(str(faces_dir / row["file"]), cv2.IMREAD_COLOR)
            rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            rgb.tofile(work / "photos" / f"{row['file']}.rgb")
            photos.append({"file": row["file"], "height": rgb.shape[0], "width": rgb.shape[1],
                           "faces": int(count)})
    (work / "photos.json").write_text(json.dumps(photos, indent=1))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER+ folder")
    parser.add_argument("--faces", required=True, help="../shared/data/faces (with SOURCES.csv)")
    parser.add_argument("--work", required=True, help="folder for the shared inputs and results")
    parser.add_argument("--min-faces", type=int, default=2, help="group photos: at least this many faces")
    parser.add_argument("--ckplus48", help="CK+48 folder: also write its faces to <work>/ckplus48")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = write_faces(Path(args.data), work)
    photos = write_photos(Path(args.faces), work, args.min_faces)
    print(f"{n} test faces (7-class view), {len(photos)} group photos "
          f"({sum(p['faces'] for p in photos)} faces) in {work}")
    if args.ckplus48:
        print(f"{write_ckplus48(Path(args.ckplus48), work / 'ckplus48')} CK+48 faces (7-class view) "
              f"in {work / 'ckplus48'}")


if __name__ == "__main__":
    main()
