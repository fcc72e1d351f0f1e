"""``fer-ensemble train``: train one ensemble member on FER+, resumable, single process or DDP.

Run folder contents: ``checkpoint.pt`` (the latest epoch, a plain dict, for ``--resume``),
``best.pt`` (the weights of the best epoch on Valid), ``metrics.jsonl`` (one line per epoch) and
``curves.png``. The best epoch is chosen on Valid; Test is never read here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fer_ensemble.data import load_labelled
from fer_ensemble.errors import UserError
from fer_ensemble.metrics import evaluate_probabilities
from fer_ensemble.models import create_model, model_preprocessing, read_weights
from fer_ensemble.preprocess import Preprocessing
from fer_ensemble.prior import class_sample_weights, prior_logit_offset, training_priors
from fer_ensemble.training.augment import AugmentConfig
from fer_ensemble.training.engine import (
    ModelEma,
    predict_probabilities,
    save_atomic,
    train_one_epoch,
    unwrap,
)
from fer_ensemble.training.options import add_train_arguments

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group that torchrun describes; (rank, world size), (0, 1) without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), world_size


def build_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """No weight decay on biases and normalisation weights."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if args.opt == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=args.lr)


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Linear warm-up, then cosine decay to zero, as a LambdaLR factor per optimizer step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def load_member_weights(model: nn.Module, name: str, input_size: int, path: str | Path) -> None:
    """A trained member's weights (``best.pt`` or its run folder), classifier included."""
    path = Path(path)
    state = read_weights(path / BEST if path.is_dir() else path, "trained member")
    if "model" not in state or "preprocessing" not in state:
        raise UserError(f"--init {path}: not a fer-ensemble run's best.pt (no 'model' and 'preprocessing')")
    if state.get("model_name") != name or state["preprocessing"]["input_size"] != input_size:
        raise UserError(f"--init {path} is a {state.get('model_name')} at "
                         f"{state['preprocessing']['input_size']} px, not {name} at {input_size} px")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    for name, default in (("photo_augment", False), ("logit_adjust", 0.0), ("balance_sampling", 0.0),
                          ("time_budget", None), ("replan_after", 2), ("init", None)):
        if not hasattr(args, name):  # a checkpoint written before the flag existed
            setattr(args, name, default)
    if args.lr is None:
        args.lr = 0.1 if args.opt == "sgd" else 2e-3
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.opt == "sgd" else 0.05
    return args


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads")


@dataclass
class ClassBalance:
    """How a run treats FER+'s class prior: the prior itself, the one class-aware sampling shows the
    network (None without it), the per-sample weights that do it, the logit-adjusted loss's offset,
    and what the logits need added to answer under FER+'s prior (None: they already do)."""

    prior: np.ndarray
    seen_prior: np.ndarray | None
    sample_weights: torch.Tensor | None
    loss_offset: torch.Tensor | None
    output_offset: torch.Tensor | None

    @classmethod
    def of(cls, targets: np.ndarray, args: argparse.Namespace, device: torch.device) -> ClassBalance:
        prior, seen_prior = training_priors(targets, args.balance_sampling)
        log_prior = torch.from_numpy(np.log(np.clip(prior, 1e-6, None))).float().to(device)
        output_offset = prior_logit_offset(prior, args.logit_adjust, seen_prior)
        weights = class_sample_weights(targets, args.balance_sampling) if args.balance_sampling else None
        return cls(
            prior, seen_prior,
            None if weights is None else torch.from_numpy(weights),
            args.logit_adjust * log_prior if args.logit_adjust else None,
            None if output_offset is None else torch.from_numpy(output_offset).to(device),
        )


def start_or_resume(args: argparse.Namespace) -> tuple[argparse.Namespace, dict | None]:
    """The run's arguments and, with ``--resume``, its latest checkpoint, whose recorded arguments
    win over the command line's (except the device and the progress bar)."""
    path = Path(args.out) / CHECKPOINT
    if not args.resume:
        if args.model is None or args.data is None:
            raise UserError("--model and --data are required (unless --resume)")
        if path.is_file():  # never overwrite a run's checkpoints nor mix two runs' metrics
            raise UserError(f"--out {args.out} holds a run ({CHECKPOINT}): add --resume to go on with it, "
                            "or choose another --out")
        return fill_defaults(args), None
    if not path.is_file():
        raise UserError(f"--resume: no {CHECKPOINT} in {args.out}")
    state = read_weights(path, "checkpoint")
    resumed = argparse.Namespace(**state["args"])
    resumed.device, resumed.no_progress, resumed.resume = args.device, args.no_progress, True
    return fill_defaults(resumed), state


def score_on_valid(model: nn.Module, ema: ModelEma | None, valid, valid_images: torch.Tensor,
                   preprocessing: Preprocessing, precision: str,
                   balance: ClassBalance) -> tuple[nn.Module, dict]:
    """The better of the raw and the EMA weights on Valid, and its metrics: under FER+'s prior and
    with the prior divided out (what a class-balanced reading scores)."""
    candidates = {"raw": model} if ema is None else {"raw": model, "ema": ema.module}
    probabilities = {key: predict_probabilities(module, valid_images, preprocessing, precision,
                                                logit_offset=balance.output_offset)
                     for key, module in candidates.items()}
    reports = {key: evaluate_probabilities(p, valid.labels) for key, p in probabilities.items()}
    chosen = max(reports, key=lambda key: reports[key].accuracy)  # EMA lags in short runs
    report = reports[chosen]
    balanced = evaluate_probabilities(probabilities[chosen] / balance.prior, valid.labels)
    metrics = {
        "valid_accuracy": report.accuracy,
        "valid_macro_f1": report.macro_f1,
        "valid_macro_recall": report.macro_recall,
        "valid_balanced_accuracy": balanced.accuracy,
        "valid_balanced_macro_recall": balanced.macro_recall,
        "valid_nll": report.nll,
        "valid_weights": chosen,
        **{f"valid_accuracy_{key}": r.accuracy for key, r in reports.items()},
    }
    return candidates[chosen], metrics


def run_training(args: argparse.Namespace) -> Path:
    """Train (or resume) one member; returns the run folder."""
    out = Path(args.out)
    args, resume_state = start_or_resume(args)
    recorded_args = {k: v for k, v in vars(args).items() if k not in ("handler", "command", "verbose")}

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(args.device, local_rank)
    rank, world_size = init_distributed(device)
    main_process = rank == 0
    out.mkdir(parents=True, exist_ok=True)

    train = load_labelled(args.data, "train", args.label_mode).head(args.subset)
    valid = load_labelled(args.data, "valid", "majority").head(args.valid_subset)
    train_images = torch.from_numpy(train.images).to(device)
    train_targets = torch.from_numpy(train.targets).to(device)
    valid_images = torch.from_numpy(valid.images).to(device)
    balance = ClassBalance.of(train.targets, args, device)

    torch.manual_seed(args.seed)
    model = create_model(args.model, input_size=args.input_size, weights=args.weights,
                         dropout=args.dropout)
    if args.init and resume_state is None:
        load_member_weights(model, args.model, args.input_size, args.init)
    preprocessing = model_preprocessing(model)
    # torch's stubs have no overload of to(device, memory_format=), which torch accepts
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = ModelEma(model, args.ema_decay) if args.ema_decay > 0 else None
    optimizer = build_optimizer(model, args)
    steps_per_epoch = (len(train) // world_size) // args.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{len(train)} training images make no batch of {args.batch_size}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(steps_per_epoch * args.epochs, int(steps_per_epoch * args.warmup_epochs)),
    )
    start_epoch, best_accuracy, train_seconds = 0, -1.0, 0.0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if ema is not None:
            ema.load_state_dict(resume_state["ema"])
        start_epoch = resume_state["epoch"] + 1
        best_accuracy = resume_state["best_valid_accuracy"]
        train_seconds = resume_state["train_seconds"]
        _truncate_metrics(out / METRICS, start_epoch)
    ddp_model = model
    if world_size > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    augment = None
    if not args.no_augment:
        augment = (AugmentConfig.photo if args.photo_augment else AugmentConfig)(erase_prob=args.erase_prob)
    progress = main_process and not args.no_progress
    if start_epoch >= args.epochs:
        if main_process:
            print(f"{out}: the run is done ({args.epochs} of {args.epochs} epochs); nothing to resume", flush=True)
        return out
    if main_process:
        print(f"{args.model} @ {args.input_size}px on {machine_description(device)} x{world_size}: "
              f"{len(train)} train ({args.label_mode}), {len(valid)} valid, "
              f"epochs {start_epoch + 1}..{args.epochs}", flush=True)
    epoch = start_epoch
    while epoch < args.epochs:
        generator = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        device_generator = generator
        if device.type != "cpu":
            device_generator = torch.Generator(device).manual_seed(args.seed * 100_003 + epoch)
        torch.manual_seed(args.seed * 100_003 + epoch + 1)  # dropout
        stats = train_one_epoch(
            ddp_model, optimizer, scheduler, train_images, train_targets,
            preprocessing=preprocessing, augment=augment, label_mode=args.label_mode,
            label_smoothing=args.label_smoothing, batch_size=args.batch_size,
            generator=generator, device_generator=device_generator, precision=args.precision,
            ema=ema, rank=rank, world_size=world_size, progress=progress,
            description=f"epoch {epoch + 1}/{args.epochs}",
            sample_weights=balance.sample_weights, logit_offset=balance.loss_offset,
        )
        train_seconds += stats.seconds
        if main_process:
            eval_started = time.perf_counter()
            scored, metrics = score_on_valid(model, ema, valid, valid_images, preprocessing, args.precision,
                                             balance)
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": stats.loss,
                "train_accuracy": stats.accuracy,
                "train_images_per_second": stats.images_per_second * world_size,
                **metrics,
                "epoch_seconds": stats.seconds + time.perf_counter() - eval_started,
                "train_seconds_total": train_seconds,
            }
            improved = record["valid_accuracy"] > best_accuracy
            best_accuracy = max(best_accuracy, record["valid_accuracy"])
            if improved:
                weights = _weights_file(unwrap(scored), recorded_args, epoch, record, train_seconds, balance)
                save_atomic(weights, out / BEST)
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
            save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "epoch": epoch,
                    "args": recorded_args,
                    "best_valid_accuracy": best_accuracy,
                    "train_seconds": train_seconds,
                },
                out / CHECKPOINT,
            )
            plot_curves(out / METRICS, out / "curves.png")
            print(f"epoch {epoch + 1}/{args.epochs}  loss {stats.loss:.4f}  train acc {stats.accuracy:.4f}  "
                  f"valid acc {record['valid_accuracy']:.4f} ({record['valid_weights']})  macro-F1 "
                  f"{record['valid_macro_f1']:.4f}  macro recall {record['valid_macro_recall']:.4f} (prior "
                  f"divided out {record['valid_balanced_macro_recall']:.4f})  "
                  f"{stats.images_per_second * world_size:.0f} img/s{'  *best' if improved else ''}",
                  flush=True)
        if world_size > 1:
            dist.barrier()
        epoch += 1
        if args.time_budget and not keep_to_time_budget(args, recorded_args, epoch, out, world_size,
                                                        scheduler, steps_per_epoch, main_process):
            break
    if world_size > 1:
        dist.destroy_process_group()
    return out


def keep_to_time_budget(args: argparse.Namespace, recorded_args: dict, epoch: int, out: Path, world_size: int,
                        scheduler, steps_per_epoch: int, main_process: bool) -> bool:
    """After ``--replan-after`` epochs, shorten or lengthen the cosine schedule so that it ends
    within ``--time-budget`` (the checkpoint records the new plan, for a resume); later, stop (False)
    only if the run is well over it."""
    if epoch >= args.epochs:
        return True
    if epoch == args.replan_after:
        planned = replan_epochs(args, epoch, train_seconds_wall(out), world_size, epoch_wall_seconds(out)[-1])
        if planned != args.epochs:
            if main_process:
                print(f"re-planned to {planned} epochs to finish within {args.time_budget:g} min", flush=True)
            args.epochs = recorded_args["epochs"] = planned
            schedule = warmup_cosine(steps_per_epoch * planned, int(steps_per_epoch * args.warmup_epochs))
            scheduler.lr_lambdas = [schedule] * len(scheduler.lr_lambdas)
            if main_process:
                state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
                state["args"] = recorded_args
                save_atomic(state, out / CHECKPOINT)
        return True
    if train_seconds_wall(out) > args.time_budget * 60 * 1.15:  # a safety net for a broken plan;
        if main_process:  # a pace a few % off still finishes
            print(f"stopped after epoch {epoch} of {args.epochs}: over the time budget", flush=True)
        return False
    return True


def epoch_wall_seconds(out: Path) -> list[float]:
    """Wall seconds of each epoch so far, validation and checkpoints included."""
    rows = [json.loads(line) for line in (out / METRICS).read_text().splitlines() if line.strip()]
    return [r["epoch_seconds"] for r in rows]


def train_seconds_wall(out: Path) -> float:
    return sum(epoch_wall_seconds(out))


def replan_epochs(args: argparse.Namespace, done: int, seconds: float, world_size: int,
                  last_epoch: float | None = None) -> int:
    """Epochs whose cosine schedule ends inside ``--time-budget`` at the pace of the last epoch
    (the first one carries start-up costs), the same on every process of a distributed run."""
    per_epoch = last_epoch or seconds / max(done, 1)
    remaining = args.time_budget * 60 * 0.97 - seconds
    planned = done + max(1, int(remaining // per_epoch))
    if world_size > 1:
        box = [planned]
        dist.broadcast_object_list(box, src=0)
        planned = box[0]
    return planned


def _weights_file(model: nn.Module, args: dict, epoch: int, record: dict, train_seconds: float,
                  balance: ClassBalance) -> dict:
    """What export needs: the weights, the model's recipe, its training class prior (and the one
    class-aware sampling showed it) and how it was trained (``fer_ensemble.prior``)."""
    return {
        "class_prior": [float(p) for p in balance.prior],
        "sampled_prior": None if balance.seen_prior is None else [float(p) for p in balance.seen_prior],
        "logit_adjust": float(args.get("logit_adjust", 0.0)),
        "model": model.state_dict(),
        "model_name": args["model"],
        "preprocessing": model_preprocessing(model).to_dict(),
        "args": args,
        "epoch": epoch,
        "valid": record,
        "train_seconds": train_seconds,
        "machine": machine_description(next(model.parameters()).device),
        "torch": str(torch.__version__),
    }


def _truncate_metrics(path: Path, keep_epochs: int) -> None:
    """Drop metric lines of epochs that the checkpoint does not hold (a kill between the two)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= keep_epochs]
    path.write_text("".join(line + "\n" for line in kept))


def plot_curves(metrics_path: Path, png_path: Path) -> None:
    """Loss, accuracy and learning rate per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], marker="o")
    axes[0].set_title("train loss")
    axes[1].plot(epochs, [r["train_accuracy"] for r in rows], marker="o", label="train")
    axes[1].plot(epochs, [r["valid_accuracy"] for r in rows], marker="o", label="valid (majority)")
    axes[1].set_title("accuracy")
    axes[1].legend()
    axes[2].plot(epochs, [r["lr"] for r in rows], marker="o")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = add_train_arguments(argparse.ArgumentParser(prog="fer-ensemble train"))
    run_training(parser.parse_args(argv))
    return 0


if __name__ == "__main__":  # torchrun --nproc_per_node=2 -m fer_ensemble.training.train ...
    sys.exit(main())
