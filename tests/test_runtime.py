"""The ONNX side needs no torch: tiny graphs built on the fly, evaluation with torch blocked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from support import REPO, tiny_member

from fer_ensemble.preprocess import Preprocessing, prepare_batch
from fer_ensemble.runtime import OnnxClassifier, softmax

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "


def test_classifier_on_a_tiny_graph(tmp_path: Path) -> None:
    card = tiny_member(tmp_path)
    classifier = OnnxClassifier(card)
    assert classifier.preprocessing.input_size == 16 and classifier.variant == "fp32"
    faces = [np.full((48, 48), 30, np.uint8), np.random.default_rng(1).integers(0, 255, (60, 50, 3), np.uint8)]
    probs = classifier.predict_proba(faces)
    params = np.load(tmp_path / "tiny-params.npz")
    batch = prepare_batch(faces, classifier.preprocessing)
    expected = softmax(batch.mean(axis=(2, 3)) @ params["weight"] + params["bias"])
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert OnnxClassifier(tmp_path / "tiny.onnx").name == "tiny"  # the card is found beside the file


def test_preprocessing_is_gray_replicated_and_normalised() -> None:
    pre = Preprocessing(input_size=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # pure red -> gray 76
    batch = prepare_batch([bgr], pre)
    assert batch.shape == (1, 3, 4, 4) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, (76 / 255 - 0.5) / 0.5, atol=1e-6)


def test_onnx_evaluation_runs_with_torch_blocked(tmp_path: Path, ferplus: Path) -> None:
    card = tiny_member(tmp_path)
    code = BLOCK_TORCH + (
        "from fer_ensemble.cli import main; "
        f"raise SystemExit(main(['evaluate', {str(card)!r}, '--data', {str(ferplus)!r}, "
        "'--split', 'valid', '--json']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_images"] == 3_191


def test_runtime_and_cli_import_no_torch() -> None:
    code = (
        "import sys, fer_ensemble, fer_ensemble.runtime, fer_ensemble.evaluate, fer_ensemble.cli, "
        "fer_ensemble.data, fer_ensemble.metrics; fer_ensemble.cli.build_parser(); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
    for command in ("train", "evaluate", "export", "benchmark-train", "fetch-weights"):
        result = subprocess.run(
            [sys.executable, "-c", BLOCK_TORCH + f"from fer_ensemble.cli import main; main(['{command}', '--help'])"],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )
        assert result.returncode == 0 and "usage" in result.stdout, result.stderr


def test_the_top_level_help_imports_no_app() -> None:
    """``fer-ensemble --help`` (and a mistyped command) builds the parser without any app, so it
    imports neither ONNX Runtime nor OpenCV nor NumPy (0.08 s here, against 1.8 s before);
    ``predict --help`` imports predict's app alone."""
    code = ("import sys, contextlib, io; from fer_ensemble.cli import main\n"
            "for argv in (['--help'], ['frobnicate']):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n"
            "        main(argv)\n"
            "print(sorted(m for m in ('onnxruntime', 'cv2', 'numpy', 'fer_ensemble.apps.predict') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
    result = subprocess.run([sys.executable, "-m", "fer_ensemble.cli", "predict", "--help"], capture_output=True,
                            text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0 and "--geometry" in result.stdout


def test_a_face_budget_reads_new_faces_then_the_longest_waiting() -> None:
    """The webcam's --faces-per-frame: with four faces and a budget of two, each face is read every
    other frame, every face is in every frame's answer, and a new face is read at once."""
    from fer_ensemble.apps.benchmark import test_frame as frame_with_faces
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer(ema_weight=1.0)
    frame = frame_with_faces(4)
    boxes = recognizer.detect(frame)
    assert len(boxes) == 4
    read, original = [], recognizer.read
    recognizer.read = lambda gray, faces, embeddings=False: (  # type: ignore[method-assign]
        read.append(len(faces)) or original(gray, faces, embeddings))
    stream = recognizer.stream()
    answers = [stream.update(frame, boxes=boxes, budget=2) for _ in range(5)]
    assert all(len(faces) == 4 for faces in answers) and read == [4, 2, 2, 2, 2]
    assert sorted(t.answered for t in stream.tracker.tracks) == [4, 4, 5, 5]
    assert answers[-1] == stream.update(frame, boxes=boxes)  # a still frame: the same answers as reading all


def test_a_missed_detection_holds_the_tracked_face_for_a_few_frames() -> None:
    """Issue 22, item 4: one missed detection does not make a tracked face blink out (for HOLD_S,
    0.1 s: 3 frames without timestamps, 1/30 s apart)."""
    import cv2

    from fer_ensemble.media.inputs import SAMPLES
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    stream = EmotionRecognizer().stream()
    frame = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    (seen,) = stream.update(frame)
    for _ in range(3):
        (held,) = stream.update(frame, boxes=[])
        assert held.held and held.track_id == seen.track_id and held.box == seen.box and held.label == seen.label
    assert stream.update(frame, boxes=[]) == []  # longer than the hold: gone
    assert not seen.held and seen.to_dict()["held"] is False
