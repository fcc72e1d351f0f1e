"""Our shipped ensemble (and each of its members) on the benchmark's inputs, in the project's venv.

On a taiwan-posed work folder (``taiwan.json``, see prepare.py): ``EmotionRecognizer()`` as shipped
(default detector) on the whole photos, the largest face of each, and the same recognizer's
classifier on prepare.py's ``our_box`` (the same box, so both answers should agree).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from harness import (
    end_to_end,
    largest,
    load_faces,
    load_photos,
    load_taiwan,
    time_per_face,
    to_common_order,
    write_result,
)

import fer_ensemble
from fer_ensemble.constants import EMOTIONS
from fer_ensemble.metrics import seven_class_view
from fer_ensemble.runtime.blazeface import BlazeFaceDetector
from fer_ensemble.runtime.detection import HaarFaceDetector
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.recognizer import EmotionRecognizer, load_ensemble

SEVEN = [name for name in EMOTIONS if name != "contempt"]


def seven_class(probs: np.ndarray) -> np.ndarray:
    """The evaluation's seven-class view (contempt folded out), columns in common order."""
    seven, _ = seven_class_view(probs, np.zeros(len(probs), int))  # these faces hold no contempt image
    return to_common_order(seven, SEVEN)


def member_as_ensemble(ensemble: Ensemble, index: int) -> Ensemble:
    """One member alone, with its own temperature and flip setting."""
    return Ensemble([ensemble.members[index]], ensemble.config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", required=True)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime and OpenCV threads")
    parser.add_argument("--accuracy-only", action="store_true", help="probabilities only: no timing")
    args = parser.parse_args()
    work, threads = Path(args.work), args.threads
    cv2.setNumThreads(threads)
    if (work / "taiwan.json").exists():
        write_result(work, "ours-ensemble", taiwan(work, threads))
        return
    faces = load_faces(work)
    ensemble = load_ensemble(threads=threads)
    default = {0.0: "ferplus", 1.0: "uniform"}.get(ensemble.default_prior_strength,
                                                   f"{ensemble.default_prior_strength:g}")
    systems = {"ours-ensemble": (f"fer-ensemble: ResNet50 + MobileNetV2 ensemble (prior {default}, the default)",
                                 ensemble, None)}
    if ensemble.default_prior_strength != 0.0:
        systems["ours-ensemble-ferplus"] = ("fer-ensemble: the ensemble, prior ferplus", ensemble, "ferplus")
    for i, member in enumerate(ensemble.members):
        name = member.classifier.name
        systems[f"ours-{name}"] = (f"fer-ensemble: {name} alone (prior {default})",
                                   member_as_ensemble(ensemble, i), None)
    for key, (name, system, prior) in systems.items():
        def classify(batch: np.ndarray, system=system, prior=prior) -> np.ndarray:
            return system.predict_proba(batch, prior_strength=prior)

        result = {"system": name, "package": f"fer-ensemble {fer_ensemble.__version__}",
                  "input": "48 px crop", "probs": seven_class(classify(faces))}
        if args.accuracy_only:
            write_result(work, key, result)
            continue
        result[f"ms_per_face_{threads}t"] = time_per_face(lambda f, classify=classify: classify(f[None]), faces)
        if key == "ours-ensemble":
            result["detector"] = "OpenCV Haar cascade, stills ladder"
            result[f"end_to_end_{threads}t"] = photos_end_to_end(ensemble, HaarFaceDetector(), work)  # stills preset
        write_result(work, key, result)
    if not args.accuracy_only:  # the same ensemble on the same crops: only the detector differs (no accuracy row)
        write_result(work, "ours-ensemble-blazeface", {
            "system": "fer-ensemble: the ensemble, --detector blazeface", "package": f"fer-ensemble {fer_ensemble.__version__}",
            "input": "photo", "detector": "BlazeFace (MediaPipe short range, ONNX)",
            f"end_to_end_{threads}t": photos_end_to_end(ensemble, BlazeFaceDetector(threads=threads), work)})


def photos_end_to_end(ensemble: Ensemble, detector, work: Path) -> dict:
    recognizer = EmotionRecognizer(ensemble, detector=detector)
    return end_to_end(lambda rgb: [f.box for f in recognizer.predict(np.ascontiguousarray(rgb[:, :, ::-1]))],
                      load_photos(work))


def taiwan(work: Path, threads: int) -> dict:
    """End to end on taiwan-posed's photos (the largest face; None where none) and on our boxes."""
    recognizer = EmotionRecognizer(threads=threads)
    photo_probs, photo_boxes, our_box_probs = [], [], []
    for meta, rgb in load_taiwan(work):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        faces = recognizer.predict(bgr)
        i = largest([f.box for f in faces])
        photo_boxes.append(None if i is None else list(faces[i].box))
        photo_probs.append(None if i is None else
                           seven_class(np.array([[faces[i].probabilities[n] for n in EMOTIONS]]))[0])
        box = meta["our_box"]
        our_box_probs.append(None if box is None else seven_class(recognizer.classify(bgr, [box]))[0])
    return {"system": "fer-ensemble: EmotionRecognizer() (the shipped ensemble, default detector)",
            "package": f"fer-ensemble {fer_ensemble.__version__}", "detector": type(recognizer.detector).__name__,
            "photo_probs": photo_probs, "photo_boxes": photo_boxes, "our_box_probs": our_box_probs}


if __name__ == "__main__":
    main()
