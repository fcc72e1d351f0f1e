"""What a lent GPU machine needs and does not get, since it receives the repository alone
(``scripts/train_gpu.py``), packed here: ``python -m tools.pack_data --data FER+ --out F.npz.xz``
(FER+'s splits in one compressed file, to train on) or ``--labels CSV --out F.npz`` (a labelled
photo set's faces as the apps crop them, e.g. taiwan-posed, to measure each run on real faces there,
``--checks``; never to train on). Developer tooling: not installed with the package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fer_ensemble.apps.common import bounded
from fer_ensemble.apps.labelled_photos import said_unreadable
from fer_ensemble.cli import answered
from fer_ensemble.errors import UserError
from fer_ensemble.labelled import LabelledImages, largest_faces, read_labelled
from fer_ensemble.outputs import output_file
from fer_ensemble.preprocess import resize_face
from fer_ensemble.runtime.detection import FACE_FRAMING
from fer_ensemble.runtime.detectors import DEFAULT_DETECTOR, DETECTOR_NAMES
from tools.packed_faces import PackedFaces

CHECKS_SIZE = 96
"""Pixels of a packed face: the members' input size, so their preprocessing resizes nothing."""


def pack_faces(data: LabelledImages, size: int, detector=None, margin: float = 0.0, offset: float = 0.0,
               name: str = "") -> PackedFaces:
    """Each image's face at ``size`` px: the image itself with no ``detector`` (face crops), else the
    largest face the detector finds, framed by ``margin`` and ``offset`` as in ``photo_probabilities``."""
    faces = ((read_labelled(data, p, gray=True) for p in data.paths) if detector is None
             else largest_faces(data, detector, margin, offset))
    crops = np.zeros((len(data), size, size), np.uint8)
    found = np.zeros(len(data), bool)
    for i, face in enumerate(faces):
        if face is not None:
            crops[i], found[i] = resize_face(face, size), True
    return PackedFaces(name, crops, found, data.labels, data.groups)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.pack_data", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="FER+ folder: pack its splits (name --out ... .npz.xz)")
    source.add_argument("--labels", help="file,label CSV of photos (or crops, --crops): pack their faces (--out ... .npz)")
    parser.add_argument("--out", required=True, help="output file: .npz.xz for --data, .npz for --labels")
    parser.add_argument("--splits", nargs="+", choices=("train", "valid", "test"), default=["train", "valid"],
                        help="--data: the splits to pack")
    parser.add_argument("--images", help="--labels: folder the CSV's files are relative to (default: the CSV's)")
    parser.add_argument("--crops", action="store_true", help="--labels: the images are face crops: no detector")
    parser.add_argument("--group-by", metavar="COLUMN", help="--labels: the column naming each image's person")
    parser.add_argument("--groups", metavar="CSV", help="--labels: a second CSV holding the --group-by column")
    parser.add_argument("--detector", choices=DETECTOR_NAMES, default=DEFAULT_DETECTOR,
                        help="--labels: the detector, with its stills preset (default %(default)s)")
    parser.add_argument("--size", type=bounded(int, 16, 512), default=CHECKS_SIZE,
                        help="--labels: pixels of each packed face (default %(default)s)")
    return parser


def pack(args: argparse.Namespace) -> int:
    """Pack what ``args`` name; the exit code. UserError for an --out that exists or is misnamed."""
    out = Path(args.out)
    if out.exists():
        raise UserError(f"{out} exists; choose another --out (pack_data never overwrites a file)")
    if args.labels:
        return _pack_faces(args, out)
    from fer_ensemble.data.ferplus import pack_splits

    output_file(out, "--out")  # its folder made before the work, as --out folders are
    path = pack_splits(args.data, out, tuple(args.splits))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); pass it as --data")
    return 0


def _pack_faces(args: argparse.Namespace, out: Path) -> int:
    from fer_ensemble.labelled import read_labelled_images
    from fer_ensemble.runtime.detectors import create_detector

    if out.suffix != ".npz":
        raise UserError(f"--out {out}: a packed face set is an .npz file; give a name ending in .npz")
    data = read_labelled_images(args.labels, args.images, args.group_by, args.groups)
    detector = None if args.crops else create_detector({"detector": args.detector})
    output_file(out, "--out")
    name = f"{args.labels} ({'crops' if args.crops else f'photos, largest face, {args.detector}'})"
    packed = pack_faces(data, args.size, detector, FACE_FRAMING["margin"], FACE_FRAMING["offset"], name)
    packed.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(data)} images, {int(packed.found.sum())} "
          f"with a face; pass it as scripts/train_gpu.py --checks")
    return said_unreadable(data)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return answered("tools.pack_data", lambda: pack(args), interrupted="nothing written (it writes its output once done)")


if __name__ == "__main__":
    sys.exit(main())
