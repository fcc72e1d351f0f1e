#!/usr/bin/env python3
"""Make the bundled demo clip from the bundled public-domain photos (reproducible, no download).

4 seconds at 15 fps, 640x480: the astronaut's face drifts across the frame, then Grace Hopper
zooms in, then both side by side (two faces), so tracking, smoothing and multi-face paths all
have work to do.

    python scripts/make_sample_clip.py  # writes src/fer_ensemble/samples/faces.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "fer_ensemble" / "samples"
WIDTH, HEIGHT, FPS = 640, 480, 15


def place(canvas: np.ndarray, image: np.ndarray, x: int, y: int, height: int) -> None:
    width = round(image.shape[1] * height / image.shape[0])
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(WIDTH, x + width), min(HEIGHT, y + height)
    canvas[y0:y1, x0:x1] = resized[y0 - y : y1 - y, x0 - x : x1 - x]


def frames() -> list[np.ndarray]:
    astronaut = cv2.imread(str(SAMPLES / "astronaut.png"))
    hopper = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    out = []
    for i in range(20):  # astronaut drifting right
        canvas = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        place(canvas, astronaut, 40 + 6 * i, -20, 520)
        out.append(canvas)
    for i in range(20):  # Grace Hopper zooming in
        canvas = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        height = 420 + 8 * i
        place(canvas, hopper, (WIDTH - round(512 * height / 600)) // 2, 20 - 4 * i, height)
        out.append(canvas)
    for i in range(20):  # both faces, head-and-shoulders crops side by side
        canvas = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        place(canvas, astronaut[16:216, 126:326], 10 + i, 90, 300)
        place(canvas, hopper[50:380, 100:430], 330 - i, 90, 300)
        out.append(canvas)
    return out


def main() -> int:
    path = SAMPLES / "faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v video here")
    for frame in frames():
        writer.write(frame)
    writer.release()
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
