"""Options and checks of the commands that read labelled photos (evaluate, adapt, enrol): their
inputs and framing, ``--geometry``, and the photos that could not be read."""

from __future__ import annotations

import argparse

from fer_ensemble.apps.common import bounded, warn
from fer_ensemble.errors import ExitCode, UserError
from fer_ensemble.runtime.detection import FACE_FRAMING
from fer_ensemble.runtime.detectors import DEFAULT_DETECTOR, DETECTOR_HELP, DETECTOR_NAMES


def add_labelled_photo_arguments(parser: argparse.ArgumentParser, labels_help: str, required: bool = True) -> None:
    """The inputs of the commands that read labelled photos (evaluate, adapt, enrol): ``--labels``
    (``labels_help``), ``--images``, ``--crops``, and the framing of a photo's largest face, found
    with the detector's stills preset and framed as the apps frame faces: ``--detector``,
    ``--margin``, ``--offset``."""
    parser.add_argument("--labels", required=required, help=labels_help)
    parser.add_argument("--images", help="folder the CSV's files are relative to (default: the CSV's folder)")
    parser.add_argument("--crops", action="store_true", help="the images are face crops: classified whole, no detector")
    parser.add_argument("--detector", choices=DETECTOR_NAMES, default=DEFAULT_DETECTOR,
                        help="photos, with its stills preset: " + DETECTOR_HELP)
    parser.add_argument("--margin", type=bounded(float, -0.25, 1.0), default=FACE_FRAMING["margin"],
                        help="photos: crop margin")
    parser.add_argument("--offset", type=bounded(float, -0.5, 0.5), default=FACE_FRAMING["offset"],
                        help="photos: crop offset")


def add_blendshapes_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, use: str,
                             when: str = "photos") -> None:
    """``--geometry`` of the commands that read labelled photos (evaluate, adapt, enrol): each
    face's 51 blendshapes read too (MediaPipe's models), for ``use`` (the end of its help), ``when``
    (its help's start) applies."""
    parser.add_argument("--geometry", action="store_true",
                        help=f"{when}: read each face's blendshapes too (MediaPipe's models; about 50 s for 600 "
                             f"photos on 2 cores) and {use}")


def refuse_geometry_of_crops(args: argparse.Namespace) -> None:
    """UserError (exit 2) for ``--geometry`` with ``--crops`` in the commands that read labelled
    photos: the landmarker reads faces in photos, framed from the detector's box."""
    if args.geometry and args.crops:
        raise UserError("--geometry reads faces in photos, not --crops")


def said_unreadable(data, code: int = ExitCode.OK) -> int:
    """One line on stderr per image of ``data`` (``labelled.LabelledImages``) found unreadable so far
    (each counts as an image without a face and the run goes on); the exit code: ``code``, or
    ``ExitCode.INPUT_FAILED`` where ``code`` is OK and some image could not be read."""
    for reason in data.unreadable.values():
        warn(f"{reason}; counted as a photo without a face")
    return ExitCode.INPUT_FAILED if data.unreadable and code == ExitCode.OK else code
