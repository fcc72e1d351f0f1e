#!/usr/bin/env python3
"""Build the face geometry models' ONNX files from MediaPipe's Face Landmarker bundle.

The bundle (``face_landmarker.task``, Apache 2.0; ``../shared/models/mediapipe-face-landmarker`` and
its ``SOURCE.md``) is a zip of four files; two are converted here:

- ``face_landmarks_detector.tflite`` -> ``face_landmarks.onnx``: 478 3-D landmarks of a 256 x 256
  RGB face crop in [0, 1] (x, y in crop pixels, z relative depth), a face-presence logit;
- ``face_blendshapes.tflite`` -> ``face_blendshapes.onnx``: 52 ARKit-style blendshape scores from
  146 of those landmarks (x, y in image pixels).

``tflite2onnx`` 0.4.1 fails on both; ``tf2onnx`` (its ``--tflite`` input, opset 17) converts them.
Each ONNX file is then checked against LiteRT (``ai-edge-litert``) running the original on the
bundled sample faces (largest absolute difference, printed; the script fails above 1e-3 of the
outputs' range). The conversion needs TensorFlow, tf2onnx and LiteRT, in a virtual environment of
their own (the package never imports them)::

    python -m venv /tmp/tfconv && /tmp/tfconv/bin/pip install tensorflow-cpu tf2onnx onnxruntime \\
        ai-edge-litert "opencv-python-headless<5"
    /tmp/tfconv/bin/python scripts/export_face_landmarker.py \\
        --task ../shared/models/mediapipe-face-landmarker/face_landmarker.task --out src/fer_ensemble/weights
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

TASK_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODELS = {  # the bundle's file -> (the ONNX file written, its SHA-256 in the bundle)
    "face_landmarks_detector.tflite": ("face_landmarks.onnx",
                                       "c7d54204ce0448474c7f3fa9af494787c0965cbdd6f20fc72867e43046bd43d5"),
    "face_blendshapes.tflite": ("face_blendshapes.onnx",
                                "4f36dded049db18d76048567439b2a7f58f1daabc00d78bfe8f3ad396a2d2082"),
}
SAMPLES = Path(__file__).resolve().parents[1] / "src" / "fer_ensemble" / "samples"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(task: Path, folder: Path) -> dict[str, Path]:
    """The bundle's two models, checked by SHA-256, extracted into ``folder``."""
    if sha256(task) != TASK_SHA256:
        raise SystemExit(f"{task}: not the face_landmarker.task of SOURCE.md (SHA-256 differs)")
    with zipfile.ZipFile(task) as bundle:
        bundle.extractall(folder, members=list(MODELS))
    for name, (_, digest) in MODELS.items():
        if sha256(folder / name) != digest:
            raise SystemExit(f"{name}: its SHA-256 differs from the one recorded here")
    return {name: folder / name for name in MODELS}


def convert(tflite: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(out),
                    "--opset", "17"], check=True, capture_output=True)
    import onnx

    model = onnx.load(str(out))
    model.doc_string = (f"MediaPipe Face Landmarker's {tflite.name} (face_landmarker.task, SHA-256 {TASK_SHA256}), "
                        "Copyright The MediaPipe Authors, Apache License 2.0; converted by "
                        "scripts/export_face_landmarker.py")
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def face_crops() -> list[np.ndarray]:
    """256 x 256 RGB crops in [0, 1] around the sample photos' faces (a generous square each)."""
    import cv2

    crops = []
    for name, (x, y, side) in {"grace_hopper.jpg": (110, 60, 320), "astronaut.png": (140, 10, 240)}.items():
        image = cv2.imread(str(SAMPLES / name))
        crops.append(cv2.resize(image[y:y + side, x:x + side], (256, 256))[..., ::-1].astype(np.float32) / 255)
    return crops


def outputs(tflite: Path, onnx_file: Path, inputs: np.ndarray) -> tuple[list, list]:
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    lite = Interpreter(model_path=str(tflite))
    lite.allocate_tensors()
    lite.set_tensor(lite.get_input_details()[0]["index"], inputs)
    lite.invoke()
    expected = [lite.get_tensor(d["index"]) for d in lite.get_output_details()]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    return expected, session.run(None, {session.get_inputs()[0].name: inputs})


def check(models: dict[str, Path], out: Path) -> None:
    """Each ONNX file against LiteRT on the sample faces (the blendshapes on those faces' landmarks)."""
    landmarks_file = models["face_landmarks_detector.tflite"]
    for crop in face_crops():
        expected, got = outputs(landmarks_file, out / "face_landmarks.onnx", crop[None])
        report(expected, got, "face_landmarks.onnx")
        from fer_ensemble.runtime.geometry import BLENDSHAPE_LANDMARKS

        points = expected[0].reshape(478, 3)[list(BLENDSHAPE_LANDMARKS), :2][None].astype(np.float32)
        expected, got = outputs(models["face_blendshapes.tflite"], out / "face_blendshapes.onnx", points)
        report(expected, got, "face_blendshapes.onnx")


def report(expected: list, got: list, name: str) -> None:
    for a, b in zip(expected, got):
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        difference, scale = np.abs(a - b).max(), max(np.ptp(a), 1.0)
        print(f"{name}: output of {a.size} values, largest difference from LiteRT {difference:.2e}")
        if difference > 1e-3 * scale:
            raise SystemExit(f"{name} differs from LiteRT by {difference:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", type=Path, required=True, help="face_landmarker.task")
    parser.add_argument("--out", type=Path, required=True, help="folder for the ONNX files")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    with tempfile.TemporaryDirectory() as folder:
        models = extract(args.task, Path(folder))
        for name, (onnx_name, _) in MODELS.items():
            convert(models[name], args.out / onnx_name)
            print(f"wrote {args.out / onnx_name} ({(args.out / onnx_name).stat().st_size / 1e6:.1f} MB)")
        check(models, args.out)


if __name__ == "__main__":
    main()
