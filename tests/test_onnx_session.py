"""Issue 24, item 7: one ONNX Runtime session setup and one weights folder, for the members and the
detector alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fer_ensemble.errors import UserError
from fer_ensemble.runtime import ensemble as ensemble_module
from fer_ensemble.runtime.blazeface import BLAZEFACE_FILE, BlazeFaceDetector
from fer_ensemble.runtime.classifier import OnnxClassifier
from fer_ensemble.runtime.onnx import WEIGHTS_DIR, create_session, session_options


def test_threads_and_spinning() -> None:
    one = session_options(1)
    assert (one.intra_op_num_threads, one.inter_op_num_threads) == (1, 1)
    with pytest.raises(RuntimeError):  # not set: one thread has no pool to spin
        one.get_session_config_entry("session.intra_op.allow_spinning")
    two = session_options(2)
    assert two.intra_op_num_threads == 2 and two.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = session_options(None)
    assert default.intra_op_num_threads == 0 and default.get_session_config_entry(
        "session.intra_op.allow_spinning") == "0"


def test_a_session_runs_on_the_cpu_with_the_shared_options() -> None:
    session = create_session(BLAZEFACE_FILE, threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1


def test_the_detector_and_a_member_refuse_a_bad_file_with_the_same_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    card = json.loads((WEIGHTS_DIR / "mobilenet_v2.json").read_text())
    card["files"], card["default_variant"] = {"fp32": garbage.name}, "fp32"
    (tmp_path / "garbage.json").write_text(json.dumps(card))
    for make in (lambda: BlazeFaceDetector(model=str(garbage)), lambda: OnnxClassifier(tmp_path / "garbage.json")):
        with pytest.raises(UserError, match=r"garbage\.onnx: not a loadable ONNX model \("):
            make()
    with pytest.raises(UserError, match="no ONNX model at .*missing.onnx"):  # was onnxruntime's NoSuchFile
        BlazeFaceDetector(model=str(tmp_path / "missing.onnx"))


def test_one_weights_folder() -> None:
    assert BLAZEFACE_FILE.parent == WEIGHTS_DIR and (WEIGHTS_DIR / "ensemble.json").is_file()
    assert Path(ensemble_module.WEIGHTS_DIR) == WEIGHTS_DIR  # runtime.ensemble's name for it, the same folder


def test_a_copied_detector_model_loads(tmp_path: Path) -> None:
    copy = tmp_path / "blazeface.onnx"
    shutil.copy(BLAZEFACE_FILE, copy)
    assert BlazeFaceDetector(model=str(copy), threads=1).detect(__import__("numpy").zeros((64, 64, 3), "uint8")) == []
