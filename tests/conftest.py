"""Shared fixtures: the data folders, tiny ONNX members built on the fly, one tiny trained run, and
the process state each test leaves as it found it. Plain helpers and constants live in the
``support`` package (``tests/support``), which test modules import; this file is pytest's.

Under ``CI=true`` nothing skips: missing data or a missing extra fails. Elsewhere (say after
``pip install -e .[dev]`` alone) the tests that need them skip, and the rest run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import (  # noqa: F401 - need: tests/test_docs.py still imports it from here
    REPO,
    TINY_TRAIN,
    check_set,
    ferplus_dir,
    need,
    process_state_kept,
    run_cli,
    skip_or_fail,
    tiny_member,
)


@pytest.fixture(autouse=True)
def _environment_as_it_was():
    """Each test leaves the process as it found it (``support.process_state_kept``: the environment,
    the working folder, ``sys.path``, signal handlers, loggers, OpenCV's settings, the decoder log):
    a command run in-process (``cli.main``) sets OpenCV's and FFmpeg's log variables, which would
    otherwise reach every later ``run_cli`` subprocess (a ``--verbose`` run then hears nothing from
    FFmpeg), and a video command's watch of FFmpeg's log would outlive it."""
    with process_state_kept():
        yield


@pytest.fixture(scope="session")
def ferplus() -> Path:
    """FER+ in Microsoft's layout; missing data fails under CI and skips elsewhere."""
    path = ferplus_dir()
    if not (path / "FER2013Test" / "label.csv").is_file():
        skip_or_fail(f"FER+ not found at {path} (set FERPLUS_DIR)")
    return path


@pytest.fixture(scope="session")
def ckplus48() -> Path:
    """CK+48 (posed expressions, a check set: never trained or fitted on)."""
    return check_set("CKPLUS48_DIR", "CK+48", "ckplus48")


@pytest.fixture(scope="session")
def taiwan_posed() -> Path:
    """taiwan-posed (whole photos of posed expressions, a check set: never trained on; calibrations
    are scored only on performers they were not fitted on)."""
    return check_set("TAIWAN_POSED_DIR", "taiwan-posed", "taiwan-posed")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """Real photos with 0-13 faces (its SOURCES.csv says which may be bundled)."""
    return check_set("FACES_DIR", "faces", "faces", "SOURCES.csv")


@pytest.fixture(scope="session")
def user_cases() -> Path:
    """Inputs that reproduce what users of FER tools report as failing (its README says what a
    user expects of each)."""
    return check_set("USER_CASES_DIR", "user-cases", "user-cases", "README.md")


@pytest.fixture(scope="session")
def shipped_comparison(ferplus: Path, taiwan_posed: Path, ckplus48: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``scripts/compare_ensembles.py shipped --enrol 2 --geometry`` run once for the whole session (about
    three minutes): the FER+, taiwan-posed (end to end, adapt, the resting face, profiles) and CK+48
    commands every release is decided by, each run once and read by every test of their figures.
    ``row``: its figures; ``stdout``: its table; ``raw``: each command's JSON by name (the
    script's ``measure`` lists them); ``adapted``: adapt's output folder; ``photos``: the taiwan-posed arguments."""
    out = tmp_path_factory.mktemp("compare")
    result = subprocess.run([sys.executable, "scripts/compare_ensembles.py", "shipped", "--enrol", "2", "--geometry",
                             "--ferplus", str(ferplus), "--taiwan", str(taiwan_posed), "--ckplus", str(ckplus48),
                             "--json-out", str(out / "compare.json"), "--raw-out", str(out / "raw")],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr
    raw = out / "raw" / "1-shipped"
    return {"row": json.loads((out / "compare.json").read_text())["shipped"], "stdout": result.stdout,
            "raw": {p.stem: json.loads(p.read_text()) for p in raw.glob("*.json")}, "adapted": raw / "adapted",
            "photos": ("--labels", str(taiwan_posed / "labels.csv"), "--images", str(taiwan_posed / "images"))}


@pytest.fixture(scope="session")
def tiny_run(ferplus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch MobileNetV2 run on 768 training images at 32 px (a few seconds on 2 cores)."""
    out = tmp_path_factory.mktemp("tiny-run")
    run_cli("train", *TINY_TRAIN, "--data", str(ferplus), "--out", str(out), "--epochs", "2")
    return out


@pytest.fixture
def tiny_ensemble(tmp_path: Path) -> Path:
    """Two tiny members at different input sizes and an ensemble file, built on the fly."""
    tiny_member(tmp_path, "small", input_size=16, seed=0)
    tiny_member(tmp_path, "large", input_size=24, seed=1)
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps({
        "format": "fer-ensemble/ensemble/v1",
        "members": [{"card": "small.json", "temperature": 1.5, "weight": 0.25},
                    {"card": "large.json", "temperature": 0.8, "weight": 0.75}],
        "flip_tta": False,
    }))
    return path
