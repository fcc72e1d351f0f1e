"""Plain helpers and constants the test modules share (fixtures stay in ``tests/conftest.py``).

A package, not a test module: test modules import it as ``from support import ...``, which works
because pytest puts ``tests/`` on ``sys.path`` (``pythonpath = ["tests"]`` in pyproject.toml's
``[tool.pytest.ini_options]``), whatever the working directory. ``support.group_photos`` holds the
group-photo acceptance bar.

Under ``CI=true`` nothing skips: missing data or a missing extra fails. Elsewhere (say after
``pip install -e .[dev]`` alone) the tests that need them skip, and the rest run.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
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


# --- the command line: in a fresh interpreter, or in this one -----------------------------------

def run_cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``fer-ensemble`` in a fresh interpreter, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "fer_ensemble.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"fer-ensemble {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def run_tool(name: str, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the checkout's ``python -m tools.NAME`` (developer tooling, not installed) from the
    repository's root, as a maintainer would."""
    result = subprocess.run([sys.executable, "-m", f"tools.{name}", *args],
                            capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"tools.{name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """``fer-ensemble ARGS`` run by ``fer_ensemble.cli.main`` in this process (from the repository
    root, as ``run_cli``), answered as ``run_cli(..., check=False)`` answers: the exit code (also
    argparse's, which exits through ``SystemExit``) and what the command printed on ``sys.stdout``
    and ``sys.stderr``; the process state it changes is put back (``process_state_kept``).

    For a refusal or a usage error, about a second faster than a fresh interpreter. Not for what
    needs a process of its own: Ctrl-C and signals, pipes, native libraries' own output (OpenCV's
    and FFmpeg's, written to the file descriptors), crashes, ``serve`` (it sets Starlette's spool
    size for the process), worker pools, or another environment. An exception the command does not
    turn into its one line propagates (a fresh interpreter would print its traceback, exit 1)."""
    from fer_ensemble.cli import main

    out, err = io.StringIO(), io.StringIO()
    with process_state_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        os.chdir(REPO)  # as run_cli's cwd; process_state_kept goes back
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse: a usage error (2), --help and --version (0)
            code = exit_.code
            if isinstance(code, str):  # as the interpreter does: the message on stderr, exit 1
                print(code, file=sys.stderr)
                code = 1
    return subprocess.CompletedProcess(["fer-ensemble", *args], int(code or 0), out.getvalue(), err.getvalue())


def _logger_settings() -> list[tuple]:
    """Every logger there is now, with its level, handlers, propagation and disabled flag."""
    loggers = [logging.root, *(logger for logger in logging.Logger.manager.loggerDict.values()
                               if isinstance(logger, logging.Logger))]
    return [(logger, logger.level, list(logger.handlers), logger.propagate, logger.disabled) for logger in loggers]


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """The process-wide state a command run in-process (``cli.main``) or a test can change, put
    back as it was on leaving: ``os.environ`` (``quiet_opencv`` sets OpenCV's and FFmpeg's log
    variables, which would otherwise reach every later ``run_cli`` subprocess), the working
    folder, ``sys.path``, the signal handlers, the levels and handlers of the loggers that existed
    (those a library adds on its first import stay), OpenCV's log level and thread count, and
    ``fer_ensemble.media.decoder``'s ``DecoderLog`` (a video command's pipe on file descriptor 1 is
    closed and forgotten, so the next one watches afresh). Warnings filters are pytest's own, put
    back after each test."""
    environ, path, cwd = dict(os.environ), list(sys.path), os.getcwd()
    handlers = {number: signal.getsignal(number) for number in signal.valid_signals()}
    loggers = _logger_settings()
    cv2 = sys.modules.get("cv2")
    opencv = (cv2.getNumThreads(), cv2.utils.logging.getLogLevel()) if cv2 is not None else None
    decoder = sys.modules.get("fer_ensemble.media.decoder")
    decoder_log = decoder._decoder_log if decoder is not None else None
    try:
        yield
    finally:
        decoder = sys.modules.get("fer_ensemble.media.decoder")
        if decoder is not None and decoder._decoder_log is not decoder_log:
            if decoder._decoder_log is not None:
                decoder._decoder_log.close()  # fd 1 back to what it was (if its pump still runs)
            decoder._decoder_log = decoder_log
        if opencv is not None and (cv2.getNumThreads(), cv2.utils.logging.getLogLevel()) != opencv:
            cv2.setNumThreads(opencv[0])
            cv2.utils.logging.setLogLevel(opencv[1])
        for logger, level, kept, propagate, disabled in loggers:
            if (logger.level, logger.handlers, logger.propagate, logger.disabled) != (level, kept, propagate, disabled):
                logger.setLevel(level)
                logger.handlers[:] = kept
                logger.propagate, logger.disabled = propagate, disabled
        for number, handler in handlers.items():
            if handler is not None and signal.getsignal(number) != handler:
                signal.signal(number, handler)
        if os.getcwd() != cwd:
            os.chdir(cwd)
        if sys.path != path:
            sys.path[:] = path
        if os.environ != environ:
            os.environ.clear()
            os.environ.update(environ)


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
