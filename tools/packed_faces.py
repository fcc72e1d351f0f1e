"""A labelled set's faces packed in one file (``PackedFaces``): what ``tools.pack_data --labels``
writes here and ``scripts/train_gpu.py --checks`` reads on a lent GPU machine. NumPy only, so the
GPU script needs neither ONNX Runtime nor OpenCV to read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_ensemble.errors import UserError
from fer_ensemble.outputs import written_whole


@dataclass
class PackedFaces:
    """A labelled set's faces packed in one file, to measure models where its images are not (a lent
    GPU machine gets the repository alone: ``python -m tools.pack_data --labels``, then
    ``scripts/train_gpu.py --checks``).

    ``crops``: (N, S, S) uint8 gray faces as the apps frame them, resized to S (``resize_face``),
    zeros where no face was found; ``found``: (N,) bool; ``labels``: (N,) int64 indices into
    ``EMOTIONS``; ``groups``: N group names (e.g. the performer) or None; ``name``: where they came from.
    """

    name: str
    crops: np.ndarray
    found: np.ndarray
    labels: np.ndarray
    groups: list[str] | None = None

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (compressed, no pickles) whole or not at all, and return its path."""
        arrays: dict[str, Any] = {"name": np.array(self.name), "crops": self.crops, "found": self.found, "labels": self.labels}
        if self.groups is not None:
            arrays["groups"] = np.array(self.groups)

        def write(partial: Path) -> None:
            with open(partial, "wb") as file:  # a file, not a name: savez would add .npz to the partial's
                np.savez_compressed(file, **arrays)

        return written_whole(path, write)

    @classmethod
    def load(cls, path: str | Path) -> PackedFaces:
        """What ``save`` wrote; UserError for a file that is not such a pack."""
        if not Path(path).is_file():
            raise UserError(f"no packed face set at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                groups = [str(g) for g in data["groups"]] if "groups" in data.files else None
                return cls(str(data["name"]), data["crops"], data["found"].astype(bool),
                           data["labels"].astype(np.int64), groups)
        except (OSError, KeyError, ValueError):
            raise UserError(f"{path}: not a packed face set (made by python -m tools.pack_data --labels)") from None
