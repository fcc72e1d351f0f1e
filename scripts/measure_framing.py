#!/usr/bin/env python3
"""Where does OpenCV's Haar cascade put its box on a FER+ face? The answer is the crop geometry.

FER+ faces are 48x48 frames chosen by FER2013's own (Google image search + OpenCV) pipeline; the
models learned faces framed that way. Each FER+ image is enlarged 4x (bicubic) and surrounded by
a border of its own edge pixels (so the cascade has room to find the whole face), then the runtime's
Haar cascade looks for faces; the largest box is expressed in units of the FER+ frame. The crop that
turns a Haar box back into a FER+ frame is then ``margin = (1 / side - 1) / 2`` on every side and
``offset = (frame centre - box centre) / box side`` down. Prints the medians and quartiles:

    python scripts/measure_framing.py --data ../shared/data/ferplus --split train --images 3000

``--resampling`` answers the second question, whether a face from a sharp photo should first be
brought down to FER+'s 48 px (as training's faces were) before the model's resize: FER+ Valid
faces are enlarged 2x and 4x (bicubic, standing in for a photo's larger face), then classified
by the shipped ensemble resized directly, and via 48 px; accuracy and macro recall of each.

``--detector blazeface`` does the same for BlazeFace's boxes as the runtime frames them (its own
box turned into Haar's by ``BLAZEFACE_TO_HAAR``), so that both detectors' crops are checked
against FER+'s frame directly; ``--blazeface-to-haar`` measures that relation itself, how
BlazeFace's own box relates to Haar's on the same faces. ``--alignment`` asks whether a head turned in the image plane
should be cropped turned back upright (BlazeFace's roll, from its eye keypoints): FER+ Valid faces
turned by 0-180 degrees, classified from the same boxes cropped as found and upright (always, or
from a roll of 10 or 15 degrees on); ``--upside-down-check 0`` turns BlazeFace's second look at
doubtful faces off, to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.data import load_labelled  # noqa: E402
from fer_ensemble.runtime.detection import FaceDetector, HaarFaceDetector  # noqa: E402

SCALE = 4
PAD = 0.5  # of the enlarged image, each side


def haar_box_in_frame_units(face: np.ndarray, detector: FaceDetector) -> tuple[float, float, float] | None:
    """(centre x, centre y, side) of the detector's largest box, in units of the 48 px FER+ frame."""
    size = face.shape[0] * SCALE
    pad = int(size * PAD)
    boxes = detector.detect(enlarge(face))
    if not boxes:
        return None
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    return ((x + w / 2 - pad) / size, (y + h / 2 - pad) / size, w / size)


def blazeface_to_haar(data: str, split: str, images: int) -> dict:
    """How BlazeFace's box relates to Haar's on the same FER+ faces (both enlarged and padded as
    above): its side over the eyes' distance (``eyes``), Haar's side over the larger of BlazeFace's
    side and ``eyes`` times the eyes' distance (``scale``), the shift of Haar's centre in BlazeFace
    sides (``dx``, ``dy``)."""
    from fer_ensemble.runtime.blazeface import BlazeFaceDetector

    faces = load_labelled(data, split).images[:images]
    haar = HaarFaceDetector(detect_width=0, min_face=size_floor(faces), scale_factor=1.05, coarse_side=0)
    blaze = BlazeFaceDetector(min_face=size_floor(faces), turned_scans="off")
    rows = []
    for face in faces:
        found = haar_box_in_frame_units(face, haar)
        detections = blaze.detections(enlarge(face))
        if found is not None and detections:
            d = max(detections, key=lambda d: d.w)
            rows.append((*found, d.x + d.w / 2, d.y + d.h / 2, max(d.w, d.h), d.eye_distance))
    hx, hy, hside, bx, by, bside, eyes = np.array(rows).T
    size = faces.shape[1] * SCALE
    pad = int(size * PAD)
    bx, by, bside, eyes = (bx - pad) / size, (by - pad) / size, bside / size, eyes / size
    eyes_factor = float(np.median(bside / eyes))
    quartiles = lambda v: [round(float(q), 4) for q in np.percentile(v, [25, 50, 75])]  # noqa: E731
    return {
        "split": split, "images": len(faces), "found_by_both": len(rows),
        "blazeface_side_in_frames": quartiles(bside), "eyes": quartiles(bside / eyes),
        "scale": quartiles(hside / np.maximum(bside, eyes_factor * eyes)),
        "dx": quartiles((hx - bx) / bside), "dy": quartiles((hy - by) / bside),
    }


def measure(data: str, split: str, images: int, detector_name: str = "haar") -> dict:
    """Where ``detector_name``'s box (BlazeFace's: the Haar-framed box the runtime crops around)
    sits on FER+ faces, and the margin and offset that turn it back into the FER+ frame."""
    faces = load_labelled(data, split).images[:images]
    if detector_name == "blazeface":
        from fer_ensemble.runtime.blazeface import BlazeFaceDetector

        detector = BlazeFaceDetector(min_face=size_floor(faces), turned_scans="off")
    else:
        detector = HaarFaceDetector(detect_width=0, min_face=size_floor(faces), scale_factor=1.05, coarse_side=0)
    found = [b for b in (haar_box_in_frame_units(f, detector) for f in faces) if b is not None]
    cx, cy, side = (np.array(v) for v in zip(*found))
    margin = (1 / side - 1) / 2
    offset = (0.5 - cy) / side
    quartiles = lambda v: [round(float(q), 4) for q in np.percentile(v, [25, 50, 75])]  # noqa: E731
    return {
        "detector": detector_name, "split": split, "images": len(faces), "found": len(found),
        "box_side_in_frames": quartiles(side), "box_centre_x": quartiles(cx), "box_centre_y": quartiles(cy),
        "margin": quartiles(margin), "offset": quartiles(offset),
    }


def measure_resampling(data: str) -> list[dict]:
    from fer_ensemble.metrics import evaluate_probabilities
    from fer_ensemble.runtime.recognizer import load_ensemble

    ensemble = load_ensemble()
    valid = load_labelled(data, "valid")
    rows = []
    for scale in (1, 2, 4):
        side = valid.images.shape[1] * scale
        faces = [cv2.resize(f, (side, side), interpolation=cv2.INTER_CUBIC) for f in valid.images]
        paths = {"direct": faces}
        if scale > 1:
            paths["via 48 px"] = [cv2.resize(f, valid.images.shape[1:], interpolation=cv2.INTER_AREA) for f in faces]
        for name, batch in paths.items():
            report = evaluate_probabilities(ensemble.predict_proba(batch, prior_strength="ferplus"), valid.labels)
            rows.append({"face_px": side, "resize": name, "valid_accuracy": round(report.accuracy, 4),
                         "valid_macro_recall": round(report.macro_recall, 4)})
    return rows


def measure_alignment(data: str, angles: tuple[int, ...] = (0, 10, 20, 40, 60, 90, 180),
                      upside_down_check: float | None = None) -> list[dict]:
    """Does cropping a turned head upright (BlazeFace's roll) help the classifier? FER+ Valid faces,
    enlarged and padded as above, turned by each angle (alternately clockwise and counter-clockwise),
    found by BlazeFace; the same boxes cropped as they are and turned upright. ``read_upside_down``:
    faces whose roll came out beyond 90 degrees (wrong at small angles, right at 180)."""
    from fer_ensemble.metrics import evaluate_probabilities
    from fer_ensemble.runtime.blazeface import BlazeFaceDetector
    from fer_ensemble.runtime.detection import FACE_FRAMING, crop_faces
    from fer_ensemble.runtime.recognizer import load_ensemble

    ensemble = load_ensemble()
    valid = load_labelled(data, "valid")
    checked = {} if upside_down_check is None else {"upside_down_check": upside_down_check}
    detector = BlazeFaceDetector(min_face=size_floor(valid.images), turned_scans="off", **checked)
    rows = []
    for angle in angles:
        boxes, turned_images, labels, rolls = [], [], [], []
        for index, face in enumerate(valid.images):
            turned = turn(enlarge(face), angle if index % 2 == 0 else -angle)
            found = detector.detect(turned)
            if found:
                box = max(found, key=lambda b: b[2] * b[3])
                boxes.append(box)
                turned_images.append(turned)
                labels.append(valid.labels[index])
                rolls.append(abs(box.roll))
        row = {"angle": angle, "upside_down_check": detector.options.upside_down_check,
               "faces": len(valid.images), "found": len(boxes),
               "median_abs_roll": round(float(np.median(rolls)), 1),
               "read_upside_down": int(sum(roll > 90 for roll in rolls))}
        for name, upright_from in (("as_found", 1e9), ("upright_from_15", 15.0), ("upright_from_10", 10.0),
                                   ("upright", 0.0)):
            crops = [crop_faces(image, [box], FACE_FRAMING["margin"], FACE_FRAMING["offset"], upright_from)[0]
                     for image, box in zip(turned_images, boxes)]
            report = evaluate_probabilities(ensemble.predict_proba(crops, prior_strength="ferplus"), np.array(labels))
            row[f"{name}_accuracy"] = round(report.accuracy, 4)
            row[f"{name}_macro_recall"] = round(report.macro_recall, 4)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


def enlarge(face: np.ndarray) -> np.ndarray:
    """A FER+ face enlarged SCALE times and padded with its edge pixels, as the detectors see it here."""
    size = face.shape[0] * SCALE
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    pad = int(size * PAD)
    return cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def turn(image: np.ndarray, angle: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def size_floor(faces: np.ndarray) -> int:
    """Faces smaller than half the frame are not the FER+ face."""
    return faces.shape[1] * SCALE // 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="train", choices=("train", "valid", "test"))
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--resampling", action="store_true", help="measure the resampling question instead")
    parser.add_argument("--alignment", action="store_true",
                        help="measure whether cropping turned heads upright helps (FER+ Valid, turned)")
    parser.add_argument("--angles", type=int, nargs="+", default=[0, 10, 20, 40, 60, 90, 180],
                        help="--alignment: turns of the faces, degrees")
    parser.add_argument("--upside-down-check", type=float, default=None,
                        help="--alignment: BlazeFace's upside_down_check (default: its own; 0: off)")
    parser.add_argument("--detector", choices=("haar", "blazeface"), default="haar",
                        help="whose boxes to place in the FER+ frame (BlazeFace's as the runtime frames them)")
    parser.add_argument("--blazeface-to-haar", action="store_true",
                        help="how BlazeFace's own boxes relate to Haar's on the same faces (BLAZEFACE_TO_HAAR)")
    args = parser.parse_args()
    if args.resampling:
        result = measure_resampling(args.data)
    elif args.alignment:
        result = measure_alignment(args.data, tuple(args.angles), args.upside_down_check)
    elif args.blazeface_to_haar:
        result = blazeface_to_haar(args.data, args.split, args.images)
    else:
        result = measure(args.data, args.split, args.images, args.detector)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
