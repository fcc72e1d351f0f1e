"""``fer-ensemble train``: train one member on FER+ (the ``train`` extra).

The options are torch-free, so ``--help`` works in a base install; torch is imported when it runs.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

from fer_ensemble.constants import MODEL_NAMES
from fer_ensemble.data import LABEL_MODES
from fer_ensemble.errors import Interrupted, caused_by_ctrl_c
from fer_ensemble.outputs import check_output_folder, output_folder_for_work


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", choices=MODEL_NAMES, help="required unless --resume")
    parser.add_argument("--data", help="FER+ folder (Microsoft layout or the CSV pair); required unless --resume")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, metrics, curves")
    parser.add_argument("--input-size", type=int, default=224, help="model input in pixels (seed: 224)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="after --replan-after epochs, set --epochs to what fits this wall time at "
                             "the pace measured, so the cosine schedule finishes (GPU runs); a run "
                             "more than 15 %% over it stops early")
    parser.add_argument("--replan-after", type=int, default=2, metavar="EPOCHS")
    parser.add_argument("--batch-size", type=int, default=128, help="per process")
    parser.add_argument("--label-mode", choices=LABEL_MODES, default="crossentropy")
    parser.add_argument("--opt", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--lr", type=float, default=None, help="default: sgd 0.1, adamw 2e-3 (batch 128)")
    parser.add_argument("--weight-decay", type=float, default=None, help="default: sgd 5e-4, adamw 0.05")
    parser.add_argument("--warmup-epochs", type=float, default=2.0)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--ema-decay", type=float, default=0.999, help="0 turns EMA off")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--no-augment", action="store_true", help="turn augmentation off")
    parser.add_argument("--erase-prob", type=float, default=0.25)
    parser.add_argument("--photo-augment", action="store_true",
                        help="add framing jitter, blur/sharpening, lower resolution and gamma "
                             "(bridges FER+'s web crops to clean photos)")
    parser.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                        help="logit-adjusted loss: add TAU * log(training class prior) to the logits "
                             "in the loss (0: off, 1: the network's logits carry no prior)")
    parser.add_argument("--balance-sampling", type=float, default=0.0, metavar="Q",
                        help="class-aware sampling: draw faces with weight count(class)^-Q "
                             "(0: natural frequencies, 0.5: square root, 1: balanced classes)")
    parser.add_argument("--weights", default=None, metavar="imagenet|FILE",
                        help="ImageNet weights to start the backbone from: 'imagenet' (fetched once by "
                             "'fer-ensemble fetch-weights', checked) or a local torchvision state dict")
    parser.add_argument("--backbone-lr-scale", type=float, default=1.0, metavar="S",
                        help="the backbone's learning rate is S times --lr, the new classifier's --lr "
                             "(fine-tuning from --weights: 0.1 keeps the ImageNet features from being "
                             "torn up while the classifier is still random)")
    parser.add_argument("--init", default=None, metavar="RUN",
                        help="start from a trained member (run folder or best.pt), classifier included: "
                             "fine-tuning; model and input size must match")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--subset", type=int, default=None, help="first N training images (smoke runs)")
    parser.add_argument("--valid-subset", type=int, default=None, help="first N valid images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (the command line's --out and --data win over "
                             "the recorded ones, so a moved run or data folder resumes)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Train (or, with ``--resume``, continue) the run in ``--out``; its files say the results."""
    if args.resume:  # its folder is there already; one line, exit 2, before any work (and torch's import)
        check_output_folder(args.out)
    with nullcontext() if args.resume else output_folder_for_work(args.out):
        from fer_ensemble.training.train import run_training

        try:
            run_training(args)
        except BaseException as error:  # Ctrl-C, also one cut into an import (matplotlib's, at an epoch's end)
            if not caused_by_ctrl_c(error):
                raise
            raise Interrupted(what_a_run_kept(Path(args.out))) from None
    return 0


def what_a_run_kept(out: Path) -> str:
    """What an interrupted run leaves in ``out``, for its ``interrupted`` line: the epochs done (its
    metrics' lines) and how to continue, or that none was finished."""
    from fer_ensemble.training.train import CHECKPOINT, METRICS  # imported already: the run was training

    metrics = out / METRICS
    epochs = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
    if not epochs or not (out / CHECKPOINT).is_file():
        return f"no epoch finished; nothing to resume in {out}"
    return (f"{epochs} epoch(s) done, the last kept in {out / CHECKPOINT}; continue with "
            f"fer-ensemble train --out {out} --resume")
