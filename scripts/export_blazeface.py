#!/usr/bin/env python3
"""Build the optional BlazeFace detector's ONNX file from MediaPipe's published model.

MediaPipe's pip wheels up to 0.10.14 carry ``face_detection_short_range.tflite`` (BlazeFace,
128x128 input, Apache 2.0); later wheels fetch their models at run time. This script takes the
model from that wheel (``--wheel``, or ``pip download mediapipe==0.10.14`` from the package
registry), checks its SHA-256, converts it with ``tflite2onnx`` (``pip install tflite2onnx onnx``),
lets the batch dimension vary (the converter fixes it to 1; the detector runs all tiles of a photo
in one call) and checks that ONNX Runtime gives the same outputs for a batch as one by one:

    python scripts/export_blazeface.py --out src/fer_ensemble/weights/blazeface_short_range.onnx

Only this script needs ``tflite2onnx`` and ``onnx``; the runtime reads the ONNX file with ONNX Runtime.
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

WHEEL = "mediapipe==0.10.14"
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"


def wheel_path(given: Path | None, folder: Path) -> Path:
    if given:
        return given
    subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:",
                    "-d", str(folder)], check=True)
    return next(folder.glob("mediapipe-*.whl"))


def extract_model(wheel: Path, folder: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{MEMBER} in {wheel.name} has SHA-256 {digest}, expected {SHA256}")
    path = folder / "face_detection_short_range.tflite"
    path.write_bytes(data)
    return path


def convert(tflite: Path, out: Path) -> None:
    import onnx
    import tflite2onnx
    from onnx import numpy_helper

    fixed = out.with_suffix(".batch1.onnx")
    tflite2onnx.convert(str(tflite), str(fixed))
    model = onnx.load(str(fixed))
    fixed.unlink()
    for index, init in enumerate(model.graph.initializer):  # the output Reshapes' shapes [1, -1, k]
        if init.name.startswith("TFLITE2ONNX_Vector_int64_[_1_-1"):
            shape = numpy_helper.to_array(init).copy()
            shape[0] = 0  # ONNX Reshape: 0 keeps the input's dimension, the batch
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(shape, init.name))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]
    model.doc_string = (f"BlazeFace short range ({MEMBER} of the {WHEEL} wheel, SHA-256 {SHA256}), "
                        "Apache License 2.0, converted by scripts/export_blazeface.py")
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def check(out: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).uniform(-1, 1, (3, 3, 128, 128)).astype(np.float32)
    together = session.run(None, {"input": batch})
    for index in range(len(batch)):
        alone = session.run(None, {"input": batch[index:index + 1]})
        for a, b in zip(alone, together):
            np.testing.assert_allclose(a[0], b[index], rtol=1e-4, atol=1e-4)
    print(f"{out}: {out.stat().st_size / 1e3:.0f} kB, outputs {[o.name for o in session.get_outputs()]}, "
          "batch of 3 equals one by one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wheel", type=Path, help="a downloaded mediapipe 0.10.14 wheel (default: pip download)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tflite = extract_model(wheel_path(args.wheel, Path(folder)), Path(folder))
        convert(tflite, args.out)
    check(args.out)


if __name__ == "__main__":
    main()
