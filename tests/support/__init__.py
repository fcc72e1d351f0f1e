"""Plain helpers and constants the test modules share (fixtures stay in ``tests/conftest.py``).

A package, not a test module: test modules import it as ``from support import ...``, which works
because pytest puts ``tests/`` on ``sys.path`` (``pythonpath = ["tests"]`` in pyproject.toml's
``[tool.pytest.ini_options]``), whatever the working directory. ``support.group_photos`` holds the
group-photo acceptance bar.

Under ``CI=true`` nothing skips: missing data or a missing extra fails. Elsewhere (say after
``pip install -e .[dev]`` alone) the tests that need them skip, and the rest run.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from fer_ensemble.preprocess import Preprocessing

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(module: str):
    """``module``, imported; when its extra is not installed, a failure under CI=true and a skip
    elsewhere (of the calling test, or of the whole module when called at import time)."""
    if IN_CI:
        return importlib.import_module(module)
    return pytest.importorskip(module)


def skip_or_fail(message: str) -> None:
    """Missing data: fails under CI=true, skips elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def ferplus_dir() -> Path:
    return Path(os.environ.get("FERPLUS_DIR", REPO.parent / "shared" / "data" / "ferplus"))


def check_set(variable: str, name: str, folder: str, marker: str = "labels.csv") -> Path:
    """A real-face check set from ``variable`` (default ``../shared/data/<folder>``), known by its
    ``marker`` file; missing data fails under CI=true and skips elsewhere."""
    path = Path(os.environ.get(variable, REPO.parent / "shared" / "data" / folder))
    if not (path / marker).is_file():
        skip_or_fail(f"{name} not found at {path} (set {variable})")
    return path


NO_FACE = TESTS / "data" / "no_face.png"
"""A photo with no face for either detector (shapes on a gradient; the bundled camera.png shows the
cameraman's face, which BlazeFace finds)."""


# --- the command line ---------------------------------------------------------------------------

def run_cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``fer-ensemble`` in a fresh interpreter, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "fer_ensemble.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"fer-ensemble {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# --- the repository's scripts (scripts/, not part of the package) --------------------------------

def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python scripts/NAME ARGS`` from the repository root, as its docstring says to run it;
    a failure is an AssertionError with its output."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True,
                            text=True, timeout=timeout, cwd=REPO)
    if result.returncode != 0:
        raise AssertionError(f"scripts/{name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@functools.cache
def script_module(name: str) -> ModuleType:
    """``scripts/NAME.py`` imported from its file, once (for the functions of a script that its
    command line does not reach), as the module ``scripts.NAME``: no folder is added to
    ``sys.path``."""
    spec = importlib.util.spec_from_file_location(f"scripts.{name}", REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickle look their module up by name
    spec.loader.exec_module(module)
    return module


# --- inputs built on the fly ---------------------------------------------------------------------

TINY_TRAIN = ("--model", "mobilenet_v2", "--input-size", "32", "--subset", "768",
              "--valid-subset", "512", "--batch-size", "64", "--opt", "adamw", "--lr", "2e-3",
              "--warmup-epochs", "0.5", "--no-progress")


def tiny_member(folder: Path, name: str = "tiny", input_size: int = 16, seed: int = 0,
                mirror_sensitive: bool = False) -> Path:
    """input -> global average pool -> linear(3 -> 8): a stand-in member with a model card. With
    ``mirror_sensitive`` the input is first weighted by a left-to-right ramp, so a mirrored face
    gets other logits (what the runtime's flip test-time augmentation must be tested with)."""
    onnx = need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3, 8)).astype(np.float32)
    bias = rng.normal(size=(8,)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["weighted" if mirror_sensitive else "input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"])]
    constants = [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")]
    if mirror_sensitive:
        ramp = np.broadcast_to(np.linspace(0.0, 2.0, input_size, dtype=np.float32), (1, 1, input_size, input_size))
        nodes.insert(0, helper.make_node("Mul", ["input", "ramp"], ["weighted"]))
        constants.append(numpy_helper.from_array(np.ascontiguousarray(ramp), "ramp"))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, input_size, input_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 8])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / f"{name}.onnx")
    card = {
        "name": name,
        "classes": ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"],
        "files": {"fp32": f"{name}.onnx"},
        "preprocessing": Preprocessing(input_size=input_size).to_dict(),
    }
    (folder / f"{name}.json").write_text(json.dumps(card))
    np.savez(folder / f"{name}-params.npz", weight=weight, bias=bias)
    return folder / f"{name}.json"


def turned_portrait(angle: float) -> np.ndarray:
    """The bundled portrait turned by ``angle`` degrees counter-clockwise (its roll becomes -angle),
    edges repeated."""
    import cv2

    from fer_ensemble.media.inputs import SAMPLES

    portrait = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    height, width = portrait.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    return cv2.warpAffine(portrait, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


HEIC = TESTS / "data" / "grace_hopper.heic"
"""The bundled Grace Hopper portrait as an iPhone saves photos, HEIC (28 KB), made once with
pillow-heif 1.8.1's encoder (x265), which the project does not install: ``rgb = cv2.cvtColor(
cv2.imread("src/fer_ensemble/samples/grace_hopper.jpg"), cv2.COLOR_BGR2RGB)``, then
``pillow_heif.from_bytes("RGB", rgb.shape[1::-1], rgb.tobytes()).save(HEIC, quality=40)``."""


def heic_photo(path: Path) -> bytes:
    """``HEIC`` copied to ``path``, its bytes returned; the ``heic`` extra's decoder is needed to
    read it (a failure under CI=true, a skip elsewhere, as ``need``)."""
    need("pi_heif")
    path.write_bytes(HEIC.read_bytes())
    return HEIC.read_bytes()


def huge_png(side: int = 20000) -> bytes:
    """A valid 1-bit grey PNG of side x side black pixels: a few hundred KB (194 KB at 40000, made
    in half a second) that OpenCV would decode into side * side * 3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + side // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
