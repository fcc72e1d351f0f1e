"""The one place an ONNX Runtime session is made (members and detector alike), and the folder of the
models that ship inside the package. Torch-free."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from fer_ensemble.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
"""The package's ``weights`` folder: the shipped members (ONNX files and their cards), the ensemble
file, the calibration presets and the BlazeFace detector."""

_LOAD_ERRORS = (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.NoSuchFile,
                ort_errors.InvalidArgument, ort_errors.NotImplemented)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """ONNX Runtime's options for every model this package runs: all graph optimisations;
    ``threads`` (> 0) intra-op threads and one inter-op thread (None or 0: ONNX Runtime's default,
    one per core); and, unless ``threads`` is 1, no spinning of idle threads: the members and the
    detector run one after another, and threads left spinning after one model's run take the cores
    from the next (measured on 2 cores, ensemble at batch 1: 8.2 ms per face with spinning, about
    4 ms without; benchmarks/peers, as in docs/speed.md, "Webcam pipeline")."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if threads != 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session of the model file ``path`` on the CPU execution provider, with
    ``session_options(threads)``. Raises ``UserError`` (exit 2, one line naming the file) for a
    missing file (``no ONNX model at PATH``) and for a file ONNX Runtime cannot load: not ONNX,
    damaged, or a graph it cannot run (``PATH: not a loadable ONNX model (reason)``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no ONNX model at {path}")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except _LOAD_ERRORS as error:
        raise UserError(f"{path}: not a loadable ONNX model ({error})") from None
