"""The ``fer-ensemble`` command. Subcommands import torch only when they need it."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from fer_ensemble import __version__


def _train(args: argparse.Namespace) -> int:
    from fer_ensemble.training.train import run_training

    run_training(args)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from fer_ensemble.apps.evaluate import run_evaluate

    return run_evaluate(args)


def _export(args: argparse.Namespace) -> int:
    from fer_ensemble.export import export_run

    card = export_run(args.run, args.out, data=args.data, quantize=args.int8,
                      calibration_images=args.calibration_images, test=not args.no_test)
    print(card.read_text() if args.print_card else f"wrote {card} and its ONNX files")
    return 0


def _benchmark_train(args: argparse.Namespace) -> int:
    from fer_ensemble.training.benchmark import run_benchmark

    return run_benchmark(args)


def _pack_data(args: argparse.Namespace) -> int:
    from fer_ensemble.data.ferplus import pack_splits

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, as --out folders are made
    path = pack_splits(args.data, args.out, tuple(args.splits))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); pass it as --data")
    return 0


def _fit_ensemble(args: argparse.Namespace) -> int:
    from fer_ensemble.ensemble_fit import run_fit

    return run_fit(args)


def _import_weights(args: argparse.Namespace) -> int:
    from fer_ensemble.training.gpu_weights import import_weights

    for run in import_weights(args.folder, args.out):
        print(f"wrote {run}/best.pt; export it with: fer-ensemble export {run} --out DIR")
    return 0


def _app(module: str, function: str):
    """A handler that imports its app only when it runs."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"fer_ensemble.apps.{module}"), function)(args)

    return handler


APPS = {  # name: (module, help)
    "predict": ("predict", "faces and emotions in images, folders and globs"),
    "video": ("video", "annotated video, per-frame timeline, per-track plot and summary"),
    "webcam": ("webcam", "live webcam (or --source FILE) with boxes, labels and bars"),
    "demo": ("demo", "the webcam if there is one, else the bundled sample photos and clip"),
    "benchmark": ("benchmark", "per-stage milliseconds and fps at 640x480, 1 and 4 faces"),
    "serve": ("serve", "web page, REST and WebSocket API (needs the server extra)"),
    "batch": ("batch", "photo and video collections to Parquet, on Ray Data or a local process pool"),
    "adapt": ("adapt", "fit a calibration to your labelled photos, cross-validated (needs the adapt extra)"),
}


def build_parser() -> argparse.ArgumentParser:
    from fer_ensemble.apps.evaluate import add_evaluate_arguments
    from fer_ensemble.training.options import add_benchmark_arguments, add_train_arguments

    parser = argparse.ArgumentParser(
        prog="fer-ensemble",
        description="Facial expression recognition with a ResNet50 + MobileNetV2 ensemble trained on FER+.",
    )
    parser.add_argument("--version", action="version", version=f"fer-ensemble {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="let OpenCV's and FFmpeg's own warnings through")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[common])

    for name, (module, help_text) in APPS.items():
        app = command(name, help_text)
        adder = getattr(importlib.import_module(f"fer_ensemble.apps.{module}"), f"add_{module}_arguments")
        adder(app).set_defaults(handler=_app(module, f"run_{module}"))

    train = command("train", "train one member on FER+ (needs the train extra)")
    add_train_arguments(train).set_defaults(handler=_train)

    evaluate = command("evaluate", "metrics on FER+ (official protocol) or on your own labelled photos or crops")
    add_evaluate_arguments(evaluate).set_defaults(handler=_evaluate)

    export = command("export", "a run's best weights -> ONNX + model card")
    export.add_argument("run", help="run folder (or a best.pt / checkpoint.pt)")
    export.add_argument("--out", required=True, help="folder for <model>.onnx and <model>.json")
    export.add_argument("--data", help="FER+ folder for the card's metrics (default: the run's)")
    export.add_argument("--int8", action="store_true", help="also write a static int8 model")
    export.add_argument("--calibration-images", type=int, default=512)
    export.add_argument("--no-test", action="store_true", help="leave Test out of the card")
    export.add_argument("--print-card", action="store_true")
    export.set_defaults(handler=_export)

    bench = command("benchmark-train", "training img/s per member, size, precision")
    add_benchmark_arguments(bench).set_defaults(handler=_benchmark_train)

    from fer_ensemble.ensemble_fit import add_fit_arguments

    fit = command("fit-ensemble", "temperatures, flips and weights on Valid; package")
    add_fit_arguments(fit).set_defaults(handler=_fit_ensemble)

    pack = command("pack-data", "FER+ splits in one compressed file, to carry to a GPU")
    pack.add_argument("--data", required=True, help="FER+ folder")
    pack.add_argument("--out", required=True, help="output file, name ending in .npz.xz")
    pack.add_argument("--splits", nargs="+", choices=("train", "valid", "test"), default=["train", "valid"])
    pack.set_defaults(handler=_pack_data)

    imported = command("import-weights", "fp16 parts from the GPU script -> runs")
    imported.add_argument("folder", help="the folder the GPU script wrote")
    imported.add_argument("--out", required=True, help="where to write <model>/best.pt")
    imported.set_defaults(handler=_import_weights)
    return parser


VIDEO_COMMANDS = ("video", "webcam", "batch", "demo")
"""Commands that decode video files: FFmpeg's decoding errors become their one-line warning."""


def quiet_opencv(verbose: bool, command: str) -> None:
    """Keep OpenCV's and FFmpeg's warnings (camera probing, damaged files) out of the output, so a
    problem reads as our one line; the video commands count FFmpeg's decoding errors instead
    (``media.watch_decoder_errors``). ``--verbose`` lets everything through."""
    if verbose:
        return
    import cv2

    if command in VIDEO_COMMANDS:
        from fer_ensemble.media import watch_decoder_errors

        watch_decoder_errors()
    else:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg first opens
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def main(argv: list[str] | None = None) -> int:
    from fer_ensemble.errors import ExitCode, UserError, missing_extra

    args = build_parser().parse_args(argv)
    quiet_opencv(args.verbose, args.command)

    def fail(message: object, code: ExitCode = ExitCode.USAGE) -> int:
        print(f"fer-ensemble {args.command}: {message}", file=sys.stderr)
        return code

    try:
        return int(args.handler(args))
    except UserError as error:  # a user's mistake: one line, no traceback
        return fail(error, error.exit_code)
    except FileNotFoundError as error:
        return fail(error, ExitCode.INPUT_FAILED)
    except ModuleNotFoundError as error:
        if (message := missing_extra(error)) is None:
            raise
        return fail(message)
    except BrokenPipeError:  # output piped into head, less, ...
        sys.stdout = open(os.devnull, "w")
        return ExitCode.OK
    except OSError as error:  # an output path that cannot be used: a folder, a file, no permission
        if error.filename is None:
            raise
        return fail(f"{error.filename}: {error.strerror}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
