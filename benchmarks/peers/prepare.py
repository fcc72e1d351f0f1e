"""Write the benchmark's shared inputs as raw arrays that every peer can read without our package.

FER+ Test, official majority protocol, seven-class view (contempt images left out):
``faces.u8`` (N x 48 x 48 gray) and ``faces.json`` (labels in common.json's class order).
The group photos of ../shared/data/faces, decoded once: ``photos/<name>.rgb`` (H x W x 3 RGB)
and ``photos.json`` (sizes and the true face count), so that no system is timed on decoding.
With ``--ckplus48``, the same for CK+48's posed faces in ``<work>/ckplus48`` (seven-class view:
the contempt sequences left out; ``groups`` names each face's sequence), scored for accuracy only.
With ``--taiwan``, taiwan-posed's whole photos decoded in ``<work>/taiwan`` (``photos/<file>.rgb``
and ``taiwan.json``: each photo's size, label and ``our_box``, the largest face our default
detector finds, null where none), scored for accuracy only; the images stay outside the repo.
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
from fer_ensemble.preprocess import to_gray
from fer_ensemble.runtime.detection import detect_faces
from fer_ensemble.runtime.detectors import create_detector


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


def write_taiwan(taiwan: Path, work: Path) -> list[dict]:
    """taiwan-posed's photos as RGB arrays, with the box every system gets for the classifier comparison:
    the largest face of ``EmotionRecognizer()``'s default detector (``create_detector()``)."""
    (work / "photos").mkdir(parents=True, exist_ok=True)
    detector = create_detector()
    photos = []
    with open(taiwan / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            bgr = cv2.imread(str(taiwan / "images" / row["file"]), cv2.IMREAD_COLOR)
            boxes = detect_faces(detector, bgr, to_gray(bgr))
            box = max(boxes, key=lambda b: b[2] * b[3]) if boxes else None
            rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            rgb.tofile(work / "photos" / f"{row['file']}.rgb")
            photos.append({"file": row["file"], "height": rgb.shape[0], "width": rgb.shape[1],
                           "label": CLASSES.index(row["label"]), "performer": row["performer"],
                           "our_box": None if box is None else [int(v) for v in box]})
    (work / "taiwan.json").write_text(json.dumps(photos, indent=1))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FER+ folder (required unless --only-taiwan)")
    parser.add_argument("--faces", help="../shared/data/faces (with SOURCES.csv; required unless --only-taiwan)")
    parser.add_argument("--work", required=True, help="folder for the shared inputs and results")
    parser.add_argument("--min-faces", type=int, default=2, help="group photos: at least this many faces")
    parser.add_argument("--ckplus48", help="CK+48 folder: also write its faces to <work>/ckplus48")
    parser.add_argument("--taiwan", help="taiwan-posed folder: also write its photos to <work>/taiwan")
    parser.add_argument("--only-taiwan", action="store_true", help="write <work>/taiwan and nothing else")
    args = parser.parse_args()
    if args.only_taiwan and not args.taiwan:
        parser.error("--only-taiwan needs --taiwan")
    if not args.only_taiwan and not (args.data and args.faces):
        parser.error("--data and --faces are required unless --only-taiwan")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not args.only_taiwan:
        n = write_faces(Path(args.data), work)
        photos = write_photos(Path(args.faces), work, args.min_faces)
        print(f"{n} test faces (7-class view), {len(photos)} group photos "
              f"({sum(p['faces'] for p in photos)} faces) in {work}")
    if args.ckplus48:
        print(f"{write_ckplus48(Path(args.ckplus48), work / 'ckplus48')} CK+48 faces (7-class view) "
              f"in {work / 'ckplus48'}")
    if args.taiwan:
        photos = write_taiwan(Path(args.taiwan), work / "taiwan")
        print(f"{len(photos)} taiwan-posed photos ({sum(p['our_box'] is None for p in photos)} without a face "
              f"for our detector) in {work / 'taiwan'}")


if __name__ == "__main__":
    main()
