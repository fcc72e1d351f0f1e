"""Reading user inputs without tracebacks: every problem becomes one clear line."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np

from fer_ensemble.errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


class InputError(UserError):
    """A problem with a file the user gave us; its message is shown as is."""


def expand_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their images, sorted) and glob patterns; plus what matched nothing."""
    files: list[Path] = []
    missing: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        elif path.is_file():
            files.append(path)
        elif matches := sorted(glob.glob(item, recursive=True)):
            files += [Path(m) for m in matches if Path(m).is_file()]
        else:
            missing.append(item)
    return files, missing


def read_image(path: Path) -> np.ndarray:
    """A BGR image, or an InputError that says what is wrong with the file."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if size == 0:
        raise InputError(f"{path}: empty file")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not a readable image (corrupt or not an image format)")
    return image
