"""Shared fixtures: the FER+ folder (FERPLUS_DIR) and one tiny trained run reused by several tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ferplus_dir() -> Path:
    return Path(os.environ.get("FERPLUS_DIR", REPO.parent / "shared" / "data" / "ferplus"))


@pytest.fixture(scope="session")
def ferplus() -> Path:
    """FER+ in Microsoft's layout; missing data fails under CI and skips elsewhere."""
    path = ferplus_dir()
    if not (path / "FER2013Test" / "label.csv").is_file():
        message = f"FER+ not found at {path} (set FERPLUS_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``fer-ensemble`` in a fresh interpreter, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "fer_ensemble.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"fer-ensemble {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


TINY_TRAIN = ("--model", "mobilenet_v2", "--input-size", "32", "--subset", "768",
              "--valid-subset", "512", "--batch-size", "64", "--opt", "adamw", "--lr", "2e-3",
              "--warmup-epochs", "0.5", "--no-progress")


@pytest.fixture(scope="session")
def tiny_run(ferplus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch MobileNetV2 run on 768 training images at 32 px (a few seconds on 2 cores)."""
    out = tmp_path_factory.mktemp("tiny-run")
    run_cli("train", *TINY_TRAIN, "--data", str(ferplus), "--out", str(out), "--epochs", "2")
    return out
