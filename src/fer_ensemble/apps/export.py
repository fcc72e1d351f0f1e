"""``fer-ensemble export``: a run's best weights as ONNX files and a model card (the ``train`` extra)."""

from __future__ import annotations

import argparse

from fer_ensemble.outputs import check_apart, output_folder_for_work


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("run", help="run folder (or a best.pt / checkpoint.pt)")
    parser.add_argument("--out", required=True, help="folder for <model>.onnx and <model>.json")
    parser.add_argument("--data", help="FER+ folder for the card's metrics (default: the run's)")
    parser.add_argument("--int8", action="store_true", help="also write a static int8 model")
    parser.add_argument("--calibration-images", type=int, default=512)
    parser.add_argument("--no-test", action="store_true", help="leave Test out of the card")
    parser.add_argument("--print-card", action="store_true")
    return parser


def run_export(args: argparse.Namespace) -> int:
    check_apart(args.out, [args.run], [args.run], "training run's files")  # one line, exit 2, before any work
    with output_folder_for_work(args.out):
        from fer_ensemble.export import export_run

        card = export_run(args.run, args.out, data=args.data, quantize=args.int8,
                          calibration_images=args.calibration_images, test=not args.no_test)
    print(card.read_text() if args.print_card else f"wrote {card} and its ONNX files")
    return 0
