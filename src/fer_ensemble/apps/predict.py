"""``fer-ensemble predict PATH...``: images, folders and globs -> faces, emotions, annotated copies."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2

from fer_ensemble.apps.common import (
    FACE_COLUMNS, add_recognizer_arguments, build_recognizer, face_row, unique_path, warn,
)
from fer_ensemble.apps.media import InputError, expand_inputs, read_image


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("paths", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out", help="folder for annotated copies")
    parser.add_argument("--json", action="store_true", help="JSON lines: one object per image")
    parser.add_argument("--csv", help="write one CSV row per face to this file")
    parser.add_argument("--no-bars", action="store_true", help="annotate without probability bars")
    add_recognizer_arguments(parser, still=True)
    return parser


def describe(path: Path, faces) -> str:
    if not faces:
        return f"{path}: no face"
    parts = [f"{f.label} {f.score:.2f} at {list(f.box)}" for f in faces]
    return f"{path}: {len(faces)} face{'s' if len(faces) > 1 else ''}: " + "; ".join(parts)


def run_predict(args: argparse.Namespace) -> int:
    recognizer = build_recognizer(args)
    files, missing = expand_inputs(args.paths)
    for item in missing:
        warn(f"{item}: no such file, folder or match")
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    csv_file = open(args.csv, "w", newline="") if args.csv else None
    writer = csv.writer(csv_file) if csv_file else None
    if writer:
        writer.writerow(["file", "face", *FACE_COLUMNS])
    counts = {"faces": 0, "with_faces": 0, "no_face": 0, "unreadable": 0}
    try:
        for path in files:
            try:
                image = read_image(path)
            except InputError as error:
                warn(str(error))
                counts["unreadable"] += 1
                continue
            faces = recognizer.predict(image)
            counts["faces"] += len(faces)
            counts["with_faces" if faces else "no_face"] += 1
            if not faces:
                warn(f"{path}: no face found")
            if args.json:
                print(json.dumps({"file": str(path), "faces": [f.to_dict() for f in faces]}), flush=True)
            elif not writer:
                print(describe(path, faces), flush=True)
            if writer:
                writer.writerows(face_row([str(path), i], f) for i, f in enumerate(faces))
            if out:
                annotated = recognizer.annotate(image, faces, bars=not args.no_bars)
                cv2.imwrite(str(unique_path(out, path.name, used)), annotated)
    finally:
        if csv_file:
            csv_file.close()
    problems = counts["no_face"] + counts["unreadable"] + len(missing)
    warn(f"{len(files)} image(s): {counts['with_faces']} with faces ({counts['faces']} faces), "
         f"{counts['no_face']} without a face, {counts['unreadable']} unreadable, "
         f"{len(missing)} not found")
    return 1 if problems or not files else 0
