#!/usr/bin/env python3
"""Compare training recipes for rare classes and clean photos at a CPU-affordable scale.

Every recipe trains MobileNetV2 at 64 px (fp32, one torch thread per run, ``--lanes`` runs side by
side) for the same short schedule and two seeds; run folders (checkpoints, metrics.jsonl,
curves.png) go to ``--runs``, outside the repository, and an interrupted comparison continues
where it stopped. ``report`` scores each run's best weights on FER+ Valid (selection) and on a
labelled check set such as CK+48 (reported, never used to choose):

    python scripts/compare_recipes.py run --data ../shared/data/ferplus --runs /tmp/recipes
    python scripts/compare_recipes.py report --data ../shared/data/ferplus --runs /tmp/recipes \\
        --labels ../shared/data/ckplus48/labels.csv --images ../shared/data/ckplus48/images \\
        --group-by subject,sequence --groups ../shared/data/ckplus48/sequences.csv
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RECIPES: dict[str, list[str]] = {
    "baseline": [],
    "logit-adjusted": ["--logit-adjust", "1"],
    "class-aware-sampling": ["--balance-sampling", "0.5"],
    "photo-augment": ["--photo-augment"],
    "class-aware-sampling+photo-augment": ["--balance-sampling", "0.5", "--photo-augment"],  # the two combined
}


def run_one(name: str, seed: int, args: argparse.Namespace) -> subprocess.Popen | None:
    """Start (or resume) one run in the background; None when it has already finished."""
    folder = Path(args.runs) / f"{args.prefix}{name}-seed{seed}"
    metrics = folder / "metrics.jsonl"
    done = metrics.is_file() and sum(1 for line in metrics.read_text().splitlines() if line) >= args.epochs
    if done:
        return None
    command = [sys.executable, "-m", "fer_ensemble.cli", "train", "--out", str(folder), "--no-progress"]
    if (folder / "checkpoint.pt").is_file():
        command += ["--resume"]
    else:
        command += ["--model", "mobilenet_v2", "--data", args.data, "--input-size", str(args.input_size),
                    "--epochs", str(args.epochs), "--precision", "fp32", "--seed", str(seed),
                    *RECIPES[name]]
        if args.init:  # fine-tuning a trained member: a short, gentle schedule
            command += ["--init", args.init, "--lr", str(args.lr), "--warmup-epochs", "0.1"]
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(folder / "train.log", "a")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_all(args: argparse.Namespace) -> int:
    queue = [(name, seed) for seed in args.seeds for name in args.recipes]
    running: list[tuple[str, subprocess.Popen]] = []
    started = time.perf_counter()
    while queue or running:
        while queue and len(running) < args.lanes:
            name, seed = queue.pop(0)
            process = run_one(name, seed, args)
            if process is not None:
                running.append((f"{args.prefix}{name}-seed{seed}", process))
                print(f"started {args.prefix}{name}-seed{seed}", flush=True)
        for label, process in list(running):
            if process.poll() is not None:
                running.remove((label, process))
                print(f"{label}: exit {process.returncode} at {time.perf_counter() - started:.0f} s", flush=True)
        time.sleep(5)
    return 0


def report(args: argparse.Namespace) -> int:
    import numpy as np

    from fer_ensemble.data import load_labelled
    from fer_ensemble.export import fill_training_priors, load_trained
    from fer_ensemble.labelled import evaluate_labelled, read_labelled_images
    from fer_ensemble.media.images import read_image
    from fer_ensemble.metrics import evaluate_probabilities
    from fer_ensemble.prior import adjust_probabilities

    valid = load_labelled(args.data, "valid")
    check = read_labelled_images(args.labels, args.images, args.group_by, args.groups) if args.labels else None
    check_faces = [read_image(p, gray=True) for p in check.paths] if check else []
    rows = []
    folders = sorted(Path(args.runs).glob("*-seed*")) + [Path(r) for r in args.reference]
    for folder in folders:
        if not (folder / "best.pt").is_file():
            continue
        model = load_trained(folder)
        lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x]
        if str(folder) not in args.reference and len(lines) < model.info["args"]["epochs"]:
            print(f"{folder.name}: still training ({len(lines)} of {model.info['args']['epochs']} epochs)")
            continue
        fill_training_priors(model, load_labelled(args.data, "train", model.info["args"]["label_mode"]))
        # under FER+'s prior, once; every strength is then arithmetic on these
        native = {"valid": model.predict_proba(valid.images),
                  "check": model.predict_proba(check_faces) if check else None}
        row = {"run": folder.name, "epochs": len(lines),
               "minutes": round(lines[-1]["train_seconds_total"] / 60, 1)}
        for strength in (0.0, 1.0):
            r = evaluate_probabilities(adjust_probabilities(native["valid"], model.class_prior, strength),
                                       valid.labels)
            row[f"valid_acc@{strength:g}"] = r.accuracy
            row[f"valid_macro_recall@{strength:g}"] = r.macro_recall
            if check is not None:
                c = evaluate_labelled(adjust_probabilities(native["check"], model.class_prior, strength),
                                      np.ones(len(check), bool), check)
                row[f"check_acc@{strength:g}"] = c.per_image.accuracy
                row[f"check_macro_recall@{strength:g}"] = c.per_image.macro_recall
                if c.per_group is not None:
                    row[f"check_group_acc@{strength:g}"] = c.per_group.accuracy
                    row[f"check_group_macro_recall@{strength:g}"] = c.per_group.macro_recall
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0


def table(args: argparse.Namespace) -> int:
    """The table of docs/training.md from report's JSON: each recipe's mean (and range) over its seeds."""
    rows = json.loads(Path(args.json).read_text())
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["run"].rsplit("-seed", 1)[0], []).append(row)
    columns = [("valid_acc@0", "Valid acc. (FER+ prior)"), ("valid_macro_recall@0", "Valid macro recall (FER+ prior)"),
               ("valid_acc@1", "Valid acc. (uniform)"), ("valid_macro_recall@1", "Valid macro recall (uniform)"),
               ("check_group_acc@1", "CK+48 acc. per sequence (uniform)"),
               ("check_group_macro_recall@1", "CK+48 macro recall per sequence (uniform)")]
    print("| recipe | seeds | " + " | ".join(title for _, title in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, runs in groups.items():
        cells = []
        for key, _ in columns:
            values = [100 * r[key] for r in runs if key in r]
            spread = f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
            cells.append(f"{sum(values) / len(values):.1f}{spread}" if values else "-")
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--data", required=True)
    run.add_argument("--runs", required=True, help="folder for the run folders (outside the repository)")
    run.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    run.add_argument("--epochs", type=int, default=5)
    run.add_argument("--input-size", type=int, default=64)
    run.add_argument("--lanes", type=int, default=2, help="runs side by side, one thread each")
    run.add_argument("--init", help="fine-tune this trained MobileNetV2 (run folder) instead of training from scratch")
    run.add_argument("--lr", type=float, default=0.01, help="with --init")
    run.add_argument("--prefix", default="", help="run folder prefix (e.g. ft- for fine-tuning runs)")
    rep = commands.add_parser("report")
    rep.add_argument("--data", required=True)
    rep.add_argument("--runs", required=True)
    rep.add_argument("--labels", help="file,label CSV of face crops to report (e.g. CK+48)")
    rep.add_argument("--images", help="folder the labels CSV's files are relative to")
    rep.add_argument("--group-by", help="columns (comma-separated) whose values form a group")
    rep.add_argument("--groups", help="a second CSV holding the --group-by columns")
    rep.add_argument("--json-out")
    rep.add_argument("--reference", nargs="*", default=[], help="other run folders to score beside them")
    tab = commands.add_parser("table", help="markdown table of a report's JSON, mean over seeds")
    tab.add_argument("json")
    args = parser.parse_args()
    return {"run": run_all, "report": report, "table": table}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
