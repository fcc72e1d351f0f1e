"""Options and helpers shared by the apps."""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from fer_ensemble.errors import UserError
from fer_ensemble.media.decoder import drain_stdout
from fer_ensemble.prior import parse_strength
from fer_ensemble.runtime.blazeface import TURNED_SCANS, BlazeFaceOptions
from fer_ensemble.runtime.detection import EQUALIZATIONS, FACE_FRAMING, HaarOptions
from fer_ensemble.runtime.detectors import (
    DEFAULT_DETECTOR,
    DETECTOR_HELP,
    DETECTOR_NAMES,
    DETECTOR_OPTIONS,
    create_detector,
)
from fer_ensemble.runtime.recognizer import AUTO_RESTING_FACE_HELP


def prior_argument(value: str) -> float:
    """argparse type for ``--prior``: ferplus, uniform or a strength in [0, 1]."""
    try:
        return parse_strength(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def bounded(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False):
    """argparse type: ``kind`` within [low, high] (``low_open``/``high_open``: strictly above low /
    below high), else a usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if not math.isfinite(value):  # nan passes every comparison, inf any bound not set
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            where = (f"{'above' if low_open else 'at least'} {low}" if high is None
                     else f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")
            raise argparse.ArgumentTypeError(f"must be {where}, not {text}")
        return value
    return parse


PRIOR_HELP = ("class prior of the answers: 'uniform' (every emotion equally likely a priori: rare "
              "ones such as disgust, fear and contempt are not given up), 'ferplus' (FER+'s own mix, "
              "a third neutral: best accuracy on FER+-like web photos) or a strength between 0 "
              "(ferplus) and 1 (uniform); default: the ensemble file's, fitted on FER+ Valid")


def add_prior_argument(parser: argparse.ArgumentParser, also: str = "") -> None:
    """``--prior`` (``prior_argument``; None: the ensemble file's), its help ``PRIOR_HELP`` then ``also``."""
    parser.add_argument("--prior", type=prior_argument, default=None, help=PRIOR_HELP + also)


def add_ensemble_arguments(parser: argparse.ArgumentParser, prior_also: str = "") -> None:
    """``--ensemble``, ``--prior`` (its help then ``prior_also``: ``add_prior_argument``) and
    ``--calibration``: the model options of the commands that find and read faces (``evaluate``,
    ``adapt`` and ``enrol`` name their models in their own words)."""
    parser.add_argument("--ensemble", help="ensemble file (default: the weights shipped in the package)")
    add_prior_argument(parser, prior_also)
    add_calibration_argument(parser)


def add_profile_argument(parser: argparse.ArgumentParser) -> None:
    """``--profile FILE``: a person's profile (``fer-ensemble enrol``) every face is read through."""
    parser.add_argument("--profile", metavar="FILE", default=None,
                        help="read every face through this person's profile ('fer-ensemble enrol' writes one)")


def add_recognizer_arguments(
    parser: argparse.ArgumentParser, ema_weight: float | None = None, still: bool = False
) -> None:
    """Model and detector options, with the detector preset for still images or live video."""
    add_ensemble_arguments(parser)
    parser.add_argument("--margin", type=bounded(float, -0.25, 1.0), default=FACE_FRAMING["margin"],
                        help="widen each face box by this fraction of its side on every side "
                             "(default %(default)s: FER+'s framing, measured)")
    parser.add_argument("--offset", type=bounded(float, -0.5, 0.5), default=FACE_FRAMING["offset"],
                        help="move each face box down by this fraction of its side (default %(default)s)")
    add_detector_arguments(parser, still)
    parser.add_argument("--threads", type=bounded(int, 1), default=None, help="ONNX Runtime threads per member")
    add_profile_argument(parser)
    parser.add_argument("--geometry", action="store_true",
                        help="also each face's head pose (yaw, pitch, roll), a 'turned' flag past the measured "
                             "readable range and 51 blendshapes (JSON and CSV), its 478 landmarks (JSON), and its "
                             "contours on pictures (MediaPipe's models, about 20 ms a face; docs/photos.md)")
    if ema_weight is not None:
        parser.add_argument("--ema-weight", "--smoothing", dest="ema_weight", metavar="WEIGHT",
                            type=bounded(float, 0.0, 1.0, low_open=True), default=ema_weight,
                            help="per-face smoothing: the newest frame's weight in the exponential moving "
                                 "average of each track's probabilities at 30 fps, turned into a time constant "
                                 "so other frame rates smooth over the same time (1: no smoothing; default "
                                 "%(default)s; --smoothing is its former name)")
        parser.add_argument("--auto-resting-face", action="store_true",
                            help=AUTO_RESTING_FACE_HELP + " (docs/video.md)")


CALIBRATION_HELP = ("a calibration on top of the ensemble: 'none', 'posed' (fitted on posed photos: "
                    "reads deliberate expressions better, web photos worse; see docs/accuracy.md) or the "
                    "ensemble file that 'fer-ensemble adapt' wrote; default: the ensemble file's own")


def add_calibration_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", metavar="NAME|FILE", default=None, help=CALIBRATION_HELP)


HAAR_OPTIONS = ("detect_width", "scale_factor", "min_neighbors", "equalize", "second_look", "coarse_side", "rotations")
"""Options only ``--detector haar`` reads."""
BLAZEFACE_OPTIONS = ("score_threshold", "turned_scans")
"""Options only ``--detector blazeface`` reads."""
COMMON_OPTIONS = ("min_face", "relative_min_face")
"""Options both detectors read. Every detector option's argparse default is None (not given): the
options given replace those of the detector's preset (``detector_options_of``), and one of the other
detector's, given with this one, is refused whatever its value, even the preset's own."""


def add_detector_arguments(parser: argparse.ArgumentParser, still: bool) -> None:
    """The detector and its options; the defaults shown are the stills or the live preset's."""
    haar = HaarOptions.stills() if still else HaarOptions.live()
    blazeface = BlazeFaceOptions.stills() if still else BlazeFaceOptions.live()
    parser.set_defaults(still_photos=still)
    parser.add_argument("--detector", choices=DETECTOR_NAMES, default=DEFAULT_DETECTOR, help=DETECTOR_HELP)
    parser.add_argument("--score-threshold", type=bounded(float, 0.0, 1.0, low_open=True, high_open=True),
                        default=None, help=f"blazeface: least face probability kept (default {blazeface.score_threshold})")
    width_help = "haar: " + ("widest copy the ladder of scans may reach (0: as fine as --min-face needs)"
                             if still else "frame width the detector works at (0: full size)")
    parser.add_argument("--detect-width", type=bounded(int, 0), default=None,
                        help=width_help + f"; default {haar.detect_width}")
    parser.add_argument("--min-face", type=bounded(int, 1), default=None,
                        help=f"smallest face side in frame pixels (default {haar.min_face})")
    parser.add_argument("--scale-factor", type=bounded(float, 1.0, low_open=True), default=None,
                        help=f"haar: pyramid step (default {haar.scale_factor})")
    parser.add_argument("--min-neighbors", type=bounded(int, 1), default=None,
                        help=f"haar: detections that must agree on a face (default {haar.min_neighbors})")
    parser.add_argument("--second-look", type=bounded(float, 0.0, 1.0, high_open=True), default=None,
                        help="haar: keep a box only where BlazeFace, looking again at it and its surroundings, "
                             f"scores a face at least this likely (0: off; default {haar.second_look})")
    parser.add_argument("--equalize", choices=tuple(EQUALIZATIONS), default=None,
                        help="haar: contrast of the scanned copy first (global histogram equalisation washes "
                             f"out a face on a plain or bright background; default {haar.equalize})")
    if not still:  # live video: no turned scans, no ladder (the live presets)
        parser.set_defaults(coarse_side=None, relative_min_face=None, rotations=None, turned_scans=None)
        return
    parser.add_argument("--turned-scans", choices=TURNED_SCANS, default=None,
                        help="blazeface: also scan the photo turned by 90, 180 and 270 degrees, for heads upside "
                             "down or sideways: only when no upright face is found (fallback), always (about "
                             f"twice the time of a photo with faces) or off; default {blazeface.turned_scans}")
    parser.add_argument("--coarse-side", type=bounded(int, 0), default=None,
                        help="haar: short side of the first, smallest copy of the ladder of scans (0: no ladder, "
                             f"one scan at --detect-width; default {haar.coarse_side})")
    parser.add_argument("--relative-min-face", type=bounded(float, 0.0, 1.0), default=None,
                        help="once faces are found, look for faces down to this fraction of the largest "
                             "(0: down to --min-face always; for tiny faces beside large ones add e.g. "
                             f"--min-face 20 --scale-factor 1.1, slower; default {haar.relative_min_face})")
    parser.add_argument("--rotations", type=bounded(float, -90.0, 90.0), nargs="+", default=None,
                        metavar="DEGREES", help="haar: extra scans of the image turned by these angles, for tilted "
                                                "heads (e.g. -25 25; each costs about one scan)")


def detector_options_of(args: argparse.Namespace, still: bool | None = None) -> HaarOptions | BlazeFaceOptions:
    """The options of ``--detector``: its stills or live preset (``still``; default: the command's
    own, ``add_detector_arguments``) with the options given on the command line, and only those;
    an option of the other detector, when given at all, is a usage error (UserError) rather than ignored."""
    haar = args.detector == "haar"
    _refuse([name for name in (BLAZEFACE_OPTIONS if haar else HAAR_OPTIONS) if getattr(args, name, None) is not None],
            args.detector)
    given = {name: getattr(args, name) for name in (*COMMON_OPTIONS, *(HAAR_OPTIONS if haar else BLAZEFACE_OPTIONS))
             if getattr(args, name, None) is not None}
    if "rotations" in given:
        given["rotations"] = tuple(given["rotations"])
    options = DETECTOR_OPTIONS[args.detector]
    return options.stills(**given) if (args.still_photos if still is None else still) else options.live(**given)


def _refuse(options: list[str], detector: str) -> None:
    if options:
        names = ", ".join("--" + name.replace("_", "-") for name in options)
        raise UserError(f"{names} {'does' if len(options) == 1 else 'do'} not apply to --detector {detector}")


def build_recognizer(args: argparse.Namespace, threads: int | None = None, still: bool | None = None,
                     ema_weight: float | None = None):
    """The ``EmotionRecognizer`` the options of ``add_recognizer_arguments`` describe. ``threads``
    and ``ema_weight`` replace ``--threads`` and ``--ema-weight`` (a command's own choice, such as the
    webcam's one thread per stage); ``still`` picks the detector's preset (``detector_options_of``)."""
    from fer_ensemble.runtime.recognizer import EmotionRecognizer

    threads = args.threads if threads is None else threads
    if ema_weight is None:
        ema_weight = getattr(args, "ema_weight", 1.0)  # 1: stills are not smoothed
    from fer_ensemble.runtime.profile import Profile

    profile = Profile.load(args.profile) if getattr(args, "profile", None) else None
    return EmotionRecognizer(args.ensemble, detector=create_detector(detector_options_of(args, still), threads),
                             margin=args.margin, ema_weight=ema_weight, threads=threads,
                             prior_strength=args.prior, offset=args.offset, calibration=args.calibration,
                             auto_resting_face=getattr(args, "auto_resting_face", False), profile=profile,
                             geometry=getattr(args, "geometry", False))


def median_ms(fn, repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls of ``fn``, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def warn(message: str) -> None:
    """One line on stderr, after what stdout holds (so a log of both keeps their order)."""
    drain_stdout()
    print(message, file=sys.stderr, flush=True)
