"""Face-crop preprocessing shared by evaluation, export and the runtime (NumPy + OpenCV, no torch).

Every model takes ``(N, 3, S, S)`` float32: a grayscale crop resized to ``S`` (bilinear, the same
sampling as training's augmentation), replicated to three channels and normalised per channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from fer_ensemble.constants import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input; recorded in every checkpoint and model card."""

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color: str = "gray-replicated-rgb"

    def to_dict(self) -> dict:
        """The settings as plain values, as a model card records them."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """The settings a model card records (``to_dict``'s keys); KeyError for a missing one."""
        return cls(
            input_size=int(data["input_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            color=data.get("color", "gray-replicated-rgb"),
        )


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 grayscale view of a gray, BGR or BGRA image."""
    if image.ndim == 2:
        return image
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def resize_face(face: np.ndarray, size: int) -> np.ndarray:
    """Bilinear when enlarging (as in training), area averaging when shrinking."""
    if face.shape[:2] == (size, size):
        return face
    shrinking = face.shape[0] > size or face.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(face, (size, size), interpolation=interpolation)


def prepare_batch(faces, preprocessing: Preprocessing) -> np.ndarray:
    """Stack face crops (gray or BGR uint8, any size) into the normalised model input."""
    size = preprocessing.input_size
    if len(faces) == 0:
        return np.zeros((0, 3, size, size), np.float32)
    gray = np.stack([resize_face(to_gray(np.asarray(face)), size) for face in faces])
    batch = gray.astype(np.float32)[:, None] / 255.0
    mean = np.asarray(preprocessing.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(preprocessing.std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((np.repeat(batch, 3, axis=1) - mean) / std)
