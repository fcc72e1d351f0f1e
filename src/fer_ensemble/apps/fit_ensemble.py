"""``fer-ensemble fit-ensemble``: temperatures, flips, variants and soft-voting weights of exported
members fitted on FER+ Valid, then the ensemble packaged (``fer_ensemble.ensemble_fit``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_ensemble.ensemble_fit import ACCURACY_TOLERANCE, DEFAULT_MAX_MS_PER_FACE, fit_ensemble
from fer_ensemble.outputs import check_apart, output_folder


def add_fit_ensemble_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("cards", nargs="+", help="model cards (.json) of the exported members")
    parser.add_argument("--data", required=True, help="FER+ folder")
    parser.add_argument("--out", required=True,
                        help="folder for the packaged ensemble (never the folder of the cards it reads)")
    parser.add_argument("--variant", choices=("auto", "fp32", "int8"), default="auto",
                        help="auto: within --max-ms-per-face, the fastest combination of variants and flips "
                             f"whose ensemble is within {100 * ACCURACY_TOLERANCE:g} points of the best FER+ Valid accuracy")
    parser.add_argument("--flip", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--max-ms-per-face", type=float, default=DEFAULT_MAX_MS_PER_FACE,
                        help="budget for all members on one face, measured here (default %(default)s; "
                             "0: no budget)")
    parser.add_argument("--prior", default="auto",
                        help="default class prior strength: auto (best Valid macro recall), ferplus, "
                             "uniform or a number in [0, 1]")
    return parser


def run_fit_ensemble(args: argparse.Namespace) -> int:
    out = check_apart(args.out, [], args.cards, "model cards")  # it would rewrite them, orphaning a variant's file
    output_folder(out)  # before the fit: a folder that cannot be made is one line, not the fit's errno
    config = fit_ensemble([Path(c) for c in args.cards], args.data, out, args.variant, args.flip,
                          args.max_ms_per_face or None, args.prior)
    rows = [(name, m["variant"], m["temperature"], m["test"]["accuracy"])
            for name, m in config["metrics"]["members"].items()]
    for (name, variant, temperature, accuracy), entry in zip(rows, config["members"]):
        ms = config["metrics"]["members"][name]["ms_per_face"]
        print(f"{name:<14} {variant:<5} T={temperature:.2f} weight={entry['weight']:.2f} "
              f"flip={entry['flip_tta']} {ms:.2f} ms/face  test acc {accuracy:.4f}")
    ensemble = config["metrics"]["ensemble"]
    adjusted = config["metrics"]["ensemble_default_prior"]
    print(f"{'ensemble':<14} {config['latency']['ms_per_face']:.2f} ms/face  valid acc "
          f"{ensemble['valid']['accuracy']:.4f}  test acc {ensemble['test']['accuracy']:.4f} (FER+ prior)")
    print(f"{'':<14} default prior strength {adjusted['strength']:.2f}: valid macro recall "
          f"{adjusted['valid']['macro_recall']:.4f}  test acc {adjusted['test']['accuracy']:.4f}  "
          f"-> {Path(args.out) / 'ensemble.json'}")
    return 0
