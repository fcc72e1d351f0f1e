"""``fer-ensemble train``: train one ensemble member on FER+, resumable, single process or DDP.

Run folder contents: ``checkpoint.pt`` (the latest epoch, a plain dict, for ``--resume``),
``best.pt`` (the weights of the best epoch on Valid), ``metrics.jsonl`` (one line per epoch) and
``curves.png``. The best epoch is chosen on Valid; Test is never read here.

Distributed: ``torchrun --nproc_per_node=2 -m fer_ensemble.cli train ...`` (every process runs the
command; process 0 validates, saves and prints).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fer_ensemble.data import LabelledSplit, load_labelled
from fer_ensemble.errors import UserError, json_text
from fer_ensemble.metrics import evaluate_probabilities
from fer_ensemble.models import classifier_prefixes, create_model, model_preprocessing, read_weights
from fer_ensemble.outputs import write_whole, written_whole
from fer_ensemble.preprocess import Preprocessing
from fer_ensemble.prior import class_sample_weights, prior_logit_offset, training_priors
from fer_ensemble.training.augment import AugmentConfig
from fer_ensemble.training.engine import (
    EpochStats,
    ModelEma,
    predict_probabilities,
    save_atomic,
    train_one_epoch,
    unwrap,
)
from fer_ensemble.training.pretrained import initialisation, resolve_weights

CHECKPOINT = "checkpoint.pt"
"""A run folder's checkpoint of its last epoch (what ``--resume`` continues from)."""
BEST = "best.pt"
"""A run folder's weights of its best Valid epoch (what ``export`` takes)."""
METRICS = "metrics.jsonl"
"""A run folder's metrics, one JSON line per epoch."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``--device`` as a torch device: ``auto`` is CUDA when there is one, else the CPU; a bare
    ``cuda`` is this process's GPU (``local_rank``) in a DDP run."""
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
    """No weight decay on biases and normalisation weights; with ``--backbone-lr-scale S`` other than
    1, the backbone's groups learn at ``S * lr`` and the classifier's at ``lr``."""
    scale = args.backbone_lr_scale
    head = classifier_prefixes(args.model) if scale != 1.0 else ()
    groups = []
    for lr_scale, part in ((1.0, True), (scale, False)) if head else ((1.0, None),):
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for key, param in model.named_parameters():
            if part is None or key.startswith(head) == part:
                (no_decay if param.ndim <= 1 else decay).append(param)
        groups += [
            {"params": decay, "weight_decay": args.weight_decay, "lr": args.lr * lr_scale},
            {"params": no_decay, "weight_decay": 0.0, "lr": args.lr * lr_scale},
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
    """``args`` with the options added since a resumed checkpoint was written, at their defaults."""
    for name, default in (("photo_augment", False), ("logit_adjust", 0.0), ("balance_sampling", 0.0),
                          ("time_budget", None), ("replan_after", 2), ("init", None),
                          ("backbone_lr_scale", 1.0)):
        if not hasattr(args, name):  # a checkpoint written before the flag existed
            setattr(args, name, default)
    if args.lr is None:
        args.lr = 0.1 if args.opt == "sgd" else 2e-3
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.opt == "sgd" else 0.05
    return args


def machine_description(device: torch.device) -> str:
    """The GPU's name, or the CPU, its cores and torch's threads: for logs and the benchmark's header."""
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
        """The priors, logit offset and sampling weights of ``--logit-adjust`` and
        ``--balance-sampling`` for the training targets ((N, C) votes or (N,) labels)."""
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
    win over the command line's, except for paths (``--out``, and ``--data`` when given: the run's
    folder and data as they are now) and the device and progress bar."""
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
    resumed.out = args.out  # where the run is now: a moved run folder resumes there, not where it began
    if args.data is not None:  # a moved data folder; the recorded one otherwise
        resumed.data = args.data
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


@dataclass
class TrainingRun:
    """One run's state between epochs: what ``set_up`` builds and ``resume`` restores."""

    args: argparse.Namespace
    out: Path
    device: torch.device
    rank: int
    world_size: int
    train: LabelledSplit
    valid: LabelledSplit
    train_images: torch.Tensor
    train_targets: torch.Tensor
    valid_images: torch.Tensor
    balance: ClassBalance
    model: nn.Module
    ddp_model: nn.Module  # the model itself, or DistributedDataParallel around it
    preprocessing: Preprocessing
    augment: AugmentConfig | None
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int
    start_epoch: int = 0
    best_accuracy: float = -1.0
    train_seconds: float = 0.0

    @property
    def recorded_args(self) -> dict:
        """What the checkpoint and best.pt record: the arguments, less the command line's own."""
        return {k: v for k, v in vars(self.args).items() if k not in ("handler", "command", "verbose")}

    @property
    def main_process(self) -> bool:
        """Whether this process writes files and prints (rank 0, or the only process)."""
        return self.rank == 0


def run_training(args: argparse.Namespace) -> Path:
    """Train (or resume) one member; returns the run folder.

    ``args`` are ``train``'s options (``fer_ensemble.apps.train``). Raises UserError for a run that
    cannot start (a missing ``--model``/``--data``, a run folder without ``--resume``, no checkpoint
    to resume, too few images for one batch, a ``--init`` of another model)."""
    args, resume_state = start_or_resume(args)
    run = set_up(args, fine_tune=resume_state is None)
    if resume_state is not None:
        resume(run, resume_state)
    if run.start_epoch >= args.epochs:
        if run.main_process:
            print(f"{run.out}: the run is done ({args.epochs} of {args.epochs} epochs); nothing to resume",
                  flush=True)
        return run.out
    if run.main_process:
        print(f"{args.model} @ {args.input_size}px on {machine_description(run.device)} x{run.world_size}: "
              f"{len(run.train)} train ({args.label_mode}), {len(run.valid)} valid, "
              f"epochs {run.start_epoch + 1}..{args.epochs}", flush=True)
    epoch = run.start_epoch
    while epoch < args.epochs:
        stats = train_epoch(run, epoch)
        if run.main_process:
            end_epoch(run, epoch, stats)
        if run.world_size > 1:
            dist.barrier()
        epoch += 1
        if args.time_budget and not keep_to_time_budget(run, epoch):
            break
    if run.world_size > 1:
        dist.destroy_process_group()
    return run.out


def set_up(args: argparse.Namespace, fine_tune: bool) -> TrainingRun:
    """The device (joining torchrun's process group), the data on it, the model, EMA, optimizer and
    a fresh schedule; ``fine_tune``: start from ``--init``'s weights when it is given."""
    out = Path(args.out)
    device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    rank, world_size = init_distributed(device)
    out.mkdir(parents=True, exist_ok=True)

    train = load_labelled(args.data, "train", args.label_mode).head(args.subset)
    valid = load_labelled(args.data, "valid", "majority").head(args.valid_subset)
    steps_per_epoch = (len(train) // world_size) // args.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{len(train)} training images make no batch of {args.batch_size}")

    torch.manual_seed(args.seed)
    # the backbone's starting weights only for a new run: a resumed one loads its checkpoint
    weights = resolve_weights(args.weights, args.model) if fine_tune else None
    model = create_model(args.model, input_size=args.input_size, weights=weights, dropout=args.dropout)
    if args.init and fine_tune:
        load_member_weights(model, args.model, args.input_size, args.init)
    preprocessing = model_preprocessing(model)
    # torch's stubs have no overload of to(device, memory_format=), which torch accepts
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = ModelEma(model, args.ema_decay) if args.ema_decay > 0 else None
    optimizer = build_optimizer(model, args)
    return TrainingRun(
        args=args,
        out=out, device=device, rank=rank, world_size=world_size, train=train, valid=valid,
        train_images=torch.from_numpy(train.images).to(device),
        train_targets=torch.from_numpy(train.targets).to(device),
        valid_images=torch.from_numpy(valid.images).to(device),
        balance=ClassBalance.of(train.targets, args, device),
        model=model, ddp_model=distributed(model, device, world_size), preprocessing=preprocessing,
        augment=augmentation(args), ema=ema, optimizer=optimizer, scheduler=build_scheduler(optimizer, args, steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
    )


def distributed(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """DistributedDataParallel around ``model`` in a run of several processes, else the model."""
    if world_size <= 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def augmentation(args: argparse.Namespace) -> AugmentConfig | None:
    """The augmentation the options ask for (None with ``--no-augment``)."""
    if args.no_augment:
        return None
    return (AugmentConfig.photo if args.photo_augment else AugmentConfig)(erase_prob=args.erase_prob)


def build_scheduler(optimizer: torch.optim.Optimizer, args: argparse.Namespace, steps_per_epoch: int,
                    steps_done: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """``warmup_cosine`` over ``args.epochs``, standing at step ``steps_done`` (the optimizer's
    learning rates are set to that step's)."""
    schedule = warmup_cosine(steps_per_epoch * args.epochs, int(steps_per_epoch * args.warmup_epochs))
    # last_epoch: the constructor takes one step itself; a rebuilt schedule needs the optimizer's
    # initial_lr, which the first build recorded
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=steps_done - 1)


def resume(run: TrainingRun, state: dict) -> None:
    """Restore weights, optimizer, schedule, EMA and counters from a checkpoint, and drop metric
    lines of epochs it does not hold."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    run.start_epoch = state["epoch"] + 1
    run.best_accuracy = state["best_valid_accuracy"]
    run.train_seconds = state["train_seconds"]
    _truncate_metrics(run.out / METRICS, run.start_epoch)


def train_epoch(run: TrainingRun, epoch: int) -> EpochStats:
    """One pass over the training set, seeded by (``--seed``, epoch) so a resumed run repeats it."""
    seed = run.args.seed * 100_003 + epoch
    generator = torch.Generator().manual_seed(seed)
    device_generator = generator
    if run.device.type != "cpu":
        device_generator = torch.Generator(run.device).manual_seed(seed)
    torch.manual_seed(seed + 1)  # dropout
    stats = train_one_epoch(
        run.ddp_model, run.optimizer, run.scheduler, run.train_images, run.train_targets,
        preprocessing=run.preprocessing, augment=run.augment, label_mode=run.args.label_mode,
        label_smoothing=run.args.label_smoothing, batch_size=run.args.batch_size,
        generator=generator, device_generator=device_generator, precision=run.args.precision,
        ema=run.ema, rank=run.rank, world_size=run.world_size,
        progress=run.main_process and not run.args.no_progress,
        description=f"epoch {epoch + 1}/{run.args.epochs}",
        sample_weights=run.balance.sample_weights, logit_offset=run.balance.loss_offset,
    )
    run.train_seconds += stats.seconds
    return stats


def end_epoch(run: TrainingRun, epoch: int, stats: EpochStats) -> None:
    """The main process's part after an epoch: score on Valid, keep the best weights, append the
    metrics line, save the checkpoint, redraw the curves and print the epoch's line."""
    eval_started = time.perf_counter()
    scored, metrics = score_on_valid(run.model, run.ema, run.valid, run.valid_images, run.preprocessing,
                                     run.args.precision, run.balance)
    record = {
        "epoch": epoch + 1,
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": stats.loss,
        "train_accuracy": stats.accuracy,
        "train_images_per_second": stats.images_per_second * run.world_size,
        **metrics,
        "epoch_seconds": stats.seconds + time.perf_counter() - eval_started,
        "train_seconds_total": run.train_seconds,
    }
    improved = record["valid_accuracy"] > run.best_accuracy
    run.best_accuracy = max(run.best_accuracy, record["valid_accuracy"])
    if improved:
        save_atomic(_weights_file(unwrap(scored), run.recorded_args, epoch, record, run.train_seconds,
                                  run.balance), run.out / BEST)
    earlier = (run.out / METRICS).read_text() if (run.out / METRICS).is_file() else ""
    write_whole(run.out / METRICS, earlier + json_text(record) + "\n")  # the whole log, never half a line
    save_checkpoint(run, epoch)
    plot_curves(run.out / METRICS, run.out / "curves.png")
    print(f"epoch {epoch + 1}/{run.args.epochs}  loss {stats.loss:.4f}  train acc {stats.accuracy:.4f}  "
          f"valid acc {record['valid_accuracy']:.4f} ({record['valid_weights']})  macro-F1 "
          f"{record['valid_macro_f1']:.4f}  macro recall {record['valid_macro_recall']:.4f} (prior "
          f"divided out {record['valid_balanced_macro_recall']:.4f})  "
          f"{stats.images_per_second * run.world_size:.0f} img/s{'  *best' if improved else ''}",
          flush=True)


def save_checkpoint(run: TrainingRun, epoch: int) -> None:
    """``checkpoint.pt`` after ``epoch`` (0-based): what ``--resume`` restores."""
    save_atomic(
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "epoch": epoch,
            "args": run.recorded_args,
            "best_valid_accuracy": run.best_accuracy,
            "train_seconds": run.train_seconds,
        },
        run.out / CHECKPOINT,
    )


def keep_to_time_budget(run: TrainingRun, done: int) -> bool:
    """After ``--replan-after`` of ``done`` epochs, re-plan the run's epochs so that its cosine
    schedule ends within ``--time-budget``; later, stop (False) only if the run is well over it."""
    args = run.args
    if done >= args.epochs:
        return True
    if done == args.replan_after:
        planned = replan_epochs(args, done, train_seconds_wall(run.out), run.world_size,
                                epoch_wall_seconds(run.out)[-1])
        if planned != args.epochs:
            set_epochs(run, planned, done)
            if run.main_process:
                print(f"re-planned to {planned} epochs to finish within {args.time_budget:g} min", flush=True)
        return True
    if train_seconds_wall(run.out) > args.time_budget * 60 * 1.15:  # a safety net for a broken plan;
        if run.main_process:  # a pace a few % off still finishes
            print(f"stopped after epoch {done} of {args.epochs}: over the time budget", flush=True)
        return False
    return True


def set_epochs(run: TrainingRun, epochs: int, done: int) -> None:
    """Make the run ``epochs`` long after ``done`` of them: a cosine schedule over the new length,
    standing where the run is, and a checkpoint that records both (for a resume)."""
    run.args.epochs = epochs
    run.scheduler = build_scheduler(run.optimizer, run.args, run.steps_per_epoch,
                                    steps_done=run.scheduler.last_epoch)
    if run.main_process:
        save_checkpoint(run, done - 1)


def epoch_wall_seconds(out: Path) -> list[float]:
    """Wall seconds of each epoch so far, validation and checkpoints included."""
    rows = [json.loads(line) for line in (out / METRICS).read_text().splitlines() if line.strip()]
    return [r["epoch_seconds"] for r in rows]


def train_seconds_wall(out: Path) -> float:
    """Wall seconds the run in ``out`` has trained so far, summed over its epochs' metrics lines."""
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
        "initialisation": initialisation(args.get("weights"), args.get("init"), args["model"]),
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
    write_whole(path, "".join(line + "\n" for line in kept))


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
    written_whole(png_path, lambda partial: fig.savefig(partial, dpi=100))
    plt.close(fig)
