#!/usr/bin/env python3
"""Should the landmarks' roll stand a Haar box's crop upright? (the face geometry issue, item 2)

BlazeFace's boxes carry the face's roll (from its eye key points) and ``crop_faces`` turns such a
crop upright; Haar's boxes carry none. With ``--geometry`` the landmarks give every face's roll, so
a Haar face leaning ``UPRIGHT_FROM_ROLL`` degrees or more could be cropped upright too. Measured
here on taiwan-posed's photos turned in the image by each ``--angles`` (OpenCV's rotation about the
photo's centre, edges repeated): the largest face Haar finds in each (its stills preset) is read
with its plain box and with the same box turned upright by its landmarks' roll; printed: photos
with a face, and how many of them each reads right::

    python scripts/haar_upright_study.py --labels ../shared/data/taiwan-posed/labels.csv \\
        --images ../shared/data/taiwan-posed/images --angles 0 15 -15 25

About 45 s an angle on two cores. docs/photos.md keeps the table (not kept: it read fewer right).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_ensemble.constants import EMOTIONS  # noqa: E402
from fer_ensemble.labelled import read_labelled_images  # noqa: E402
from fer_ensemble.media.images import read_image  # noqa: E402
from fer_ensemble.runtime.detection import UPRIGHT_FROM_ROLL, TurnedBox  # noqa: E402
from fer_ensemble.runtime.detectors import create_detector  # noqa: E402
from fer_ensemble.runtime.recognizer import EmotionRecognizer  # noqa: E402


def turned(image, angle: float):
    """``image`` turned by ``angle`` degrees about its centre (counterclockwise as seen), edges repeated."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                          borderMode=cv2.BORDER_REPLICATE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True)
    parser.add_argument("--images", default=None)
    parser.add_argument("--angles", type=float, nargs="+", default=[0.0, 15.0, -15.0, 25.0])
    args = parser.parse_args()
    data = read_labelled_images(args.labels, args.images)
    recognizer = EmotionRecognizer(detector=create_detector({"detector": "haar"}), geometry=True)
    assert recognizer.geometry is not None
    print("| turned by (degrees) | photos with a face | read right, plain box | read right, cropped upright by the landmarks' roll |")
    print("|---|---|---|---|")
    for angle in args.angles:
        found = plain = upright = 0
        for path, label in zip(data.paths, data.labels):
            image = turned(read_image(path), angle)
            gray, boxes = recognizer.find(image)
            if not boxes:
                continue
            box = max(boxes, key=lambda b: b[2] * b[3])
            shape = recognizer.geometry.read(image, [box])[0]
            roll = 0.0 if shape is None else shape.pose[2]
            level = TurnedBox(box, roll) if abs(roll) >= UPRIGHT_FROM_ROLL else box
            answers = recognizer.classify(gray, [box, level])
            found += 1
            plain += int(answers[0].argmax() == label)
            upright += int(answers[1].argmax() == label)
        print(f"| {angle:g} | {found} | {plain} ({100 * plain / max(found, 1):.1f} %) | "
              f"{upright} ({100 * upright / max(found, 1):.1f} %) |", flush=True)
    print(f"(classes: {', '.join(EMOTIONS)}; the default prior)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
