"""What every Python runner shares: reading the inputs, timing, writing one result file (NumPy only)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
COMMON = json.loads((HERE / "common.json").read_text())
CLASSES: list[str] = COMMON["classes"]


def load_faces(work: Path) -> np.ndarray:
    """FER+ Test faces of the seven-class view, (N, 48, 48) uint8 gray."""
    meta = json.loads((work / "faces.json").read_text())
    size = meta["size"]
    return np.fromfile(work / "faces.u8", np.uint8).reshape(meta["n"], size, size)


def load_photos(work: Path) -> list[tuple[dict, np.ndarray]]:
    """Group photos as decoded RGB arrays, with their metadata."""
    photos = json.loads((work / "photos.json").read_text())
    return [
        (p, np.fromfile(work / "photos" / f"{p['file']}.rgb", np.uint8).reshape(p["height"], p["width"], 3))
        for p in photos
    ]


def load_taiwan(work: Path) -> list[tuple[dict, np.ndarray]]:
    """taiwan-posed's whole photos as decoded RGB arrays, with their label and ``our_box`` (or None)."""
    photos = json.loads((work / "taiwan.json").read_text())
    return [
        (p, np.fromfile(work / "photos" / f"{p['file']}.rgb", np.uint8).reshape(p["height"], p["width"], 3))
        for p in photos
    ]


def largest(boxes: list) -> int | None:
    """The index of the largest box ([x, y, w, h]), None when there is none."""
    return max(range(len(boxes)), key=lambda i: boxes[i][2] * boxes[i][3]) if len(boxes) else None


def to_common_order(probs: np.ndarray, labels: list[str]) -> np.ndarray:
    """Columns reordered from a peer's label list to common.json's classes (names already mapped)."""
    return probs[:, [labels.index(name) for name in CLASSES]]


def time_per_face(classify_one: Callable[[np.ndarray], object], faces: np.ndarray) -> float:
    """Median milliseconds of one call on one face, batch 1, after a warm-up."""
    for face in faces[: COMMON["warmup_faces"]]:
        classify_one(face)
    times = []
    for face in faces[: COMMON["timed_faces"]]:
        start = time.perf_counter()
        classify_one(face)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def end_to_end(detect_and_classify: Callable[[np.ndarray], list], photos: list[tuple[dict, np.ndarray]]) -> dict:
    """Frames per second over the group photos (decoded RGB in, faces with emotions out), and the
    boxes ([x, y, w, h] in pixels) of the faces each photo gave; report.py scores them against the
    hand-labelled faces."""
    boxes = {}
    for meta, rgb in photos:  # warm-up, and the boxes
        boxes[meta["file"]] = [[round(float(v)) for v in box] for box in detect_and_classify(rgb)]
    start = time.perf_counter()
    for _ in range(COMMON["photo_repeats"]):
        for _, rgb in photos:
            detect_and_classify(rgb)
    elapsed = time.perf_counter() - start
    frames = COMMON["photo_repeats"] * len(photos)
    return {
        "fps": frames / elapsed,
        "faces_found": sum(len(b) for b in boxes.values()),
        "faces_true": sum(meta["faces"] for meta, _ in photos),
        "boxes": boxes,
    }


def write_result(work: Path, key: str, result: dict) -> None:
    """One JSON file per system under work/results, merged into what an earlier run (other threads) wrote."""
    out = work / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{key}.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    result = {**earlier, "key": key, **result}
    if "probs" in result:
        result["probs"] = np.round(np.asarray(result["probs"], np.float64), 6).tolist()
    for photos in ("photo_probs", "our_box_probs"):  # taiwan-posed: one row per photo, None where no face
        if photos in result:
            result[photos] = [None if p is None else np.round(np.asarray(p, np.float64), 6).tolist()
                              for p in result[photos]]
    path.write_text(json.dumps(result))
    print(f"{key}: wrote {path}")
