"""``fer-ensemble export``: a training run -> ONNX (dynamic batch) + model card, optionally int8.

The card records everything a user needs to trust and reproduce the file: classes in order,
preprocessing, label mode and training arguments, split sizes, valid/test metrics of the exported
file itself (ONNX Runtime, the official majority protocol), wall time, machine, commit and date.
"""

from __future__ import annotations

import datetime as dt
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_ensemble.constants import EMOTIONS
from fer_ensemble.data import LabelledSplit, load_labelled
from fer_ensemble.errors import UserError, json_text
from fer_ensemble.evaluate import evaluate_on_split
from fer_ensemble.models import create_model, read_weights
from fer_ensemble.outputs import write_whole
from fer_ensemble.preprocess import Preprocessing, prepare_batch
from fer_ensemble.prior import prior_logit_offset, training_priors
from fer_ensemble.runtime.classifier import CARD_FORMAT, OnnxClassifier, softmax
from fer_ensemble.training.pretrained import describe, initialisation

OPSET = 17
"""The ONNX opset the members are exported at (what ONNX Runtime's int8 quantizer handles)."""
EMBEDDING_OUTPUT = "embedding"
"""A member's second output: its pooled features, the classifier's input (personal profiles read them)."""


@dataclass
class TrainedModel:
    """A member loaded from a run: fp32 module in eval mode plus what the run recorded."""

    name: str
    model: nn.Module
    preprocessing: Preprocessing
    info: dict

    @property
    def class_prior(self) -> list[float] | None:
        """The training class prior the run recorded (None for runs older than the record)."""
        return self.info.get("class_prior")

    @property
    def logit_adjust(self) -> float:
        """The run's ``--logit-adjust`` tau (0.0 when it trained without logit adjustment)."""
        return float(self.info.get("logit_adjust", self.info["args"].get("logit_adjust", 0.0)))

    @property
    def sampled_prior(self) -> list[float] | None:
        """The class prior class-aware sampling showed the network (None without it)."""
        return self.info.get("sampled_prior")

    @torch.no_grad()
    def predict_proba(self, faces, batch_size: int = 256) -> np.ndarray:
        """Same preprocessing as the ONNX runtime, then the PyTorch module in fp32; probabilities
        under FER+'s prior (a logit-adjusted network gets its prior back, as in the runtime)."""
        offset = prior_logit_offset(self.class_prior, self.logit_adjust, self.sampled_prior)
        outputs = []
        for start in range(0, len(faces), batch_size):
            batch = torch.from_numpy(prepare_batch(faces[start : start + batch_size], self.preprocessing))
            logits = self.model(batch).numpy()
            outputs.append(softmax(logits if offset is None else logits + offset))
        return np.concatenate(outputs) if outputs else np.zeros((0, len(EMOTIONS)), np.float32)


def fill_training_priors(trained: TrainedModel, train: LabelledSplit) -> None:
    """Record the class priors a run trained under (``train``: its training split, label mode and
    subset as in the run) where its file lacks them: a ``checkpoint.pt``, or a run older than the
    record."""
    args = trained.info["args"]
    balance = args.get("balance_sampling", 0.0)
    if trained.class_prior is None or (balance and trained.sampled_prior is None):
        prior, seen = training_priors(train.head(args.get("subset")).targets, balance)
        trained.info["class_prior"] = prior.tolist()
        trained.info["sampled_prior"] = None if seen is None else seen.tolist()


def load_trained(path: str | Path) -> TrainedModel:
    """A run folder (its ``best.pt``), a ``best.pt`` or a resumable ``checkpoint.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    state = read_weights(path, "training run (a run folder, its best.pt or a checkpoint.pt)")
    if "args" not in state or "model" not in state:
        raise UserError(f"{path}: not a fer-ensemble training run's weights (no 'args' and 'model')")
    args = state["args"]
    if "optimizer" in state:  # a training checkpoint: export its EMA weights when it has them
        weights = state["model"]
        if state.get("ema"):
            prefix = "module."
            weights = {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}
        info = {"args": args, "epoch": state["epoch"], "train_seconds": state["train_seconds"],
                "logit_adjust": float(args.get("logit_adjust", 0.0))}
        preprocessing = Preprocessing(input_size=args["input_size"])
    else:
        weights = state["model"]
        info = {k: v for k, v in state.items() if k != "model"}
        preprocessing = Preprocessing.from_dict(state["preprocessing"])
    name = args["model"]
    model = create_model(name, input_size=preprocessing.input_size, dropout=args.get("dropout", 0.2))
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    model.eval()
    return TrainedModel(name, model, preprocessing, info)


def export_onnx(model: nn.Module, input_size: int, path: str | Path) -> None:
    """fp32 ONNX with a dynamic batch axis ('input' -> 'logits')."""
    dummy = torch.zeros(2, 3, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter is exact here; the dynamo exporter of torch 2.14 drifted by
        # up to 0.04 in logits on MobileNetV2, so it is not used.
        torch.onnx.export(
            model.eval(), (dummy,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def quantize_int8(fp32_path: Path, int8_path: Path, calibration_faces: np.ndarray,
                  preprocessing: Preprocessing) -> None:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on training faces."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            batches = [calibration_faces[i : i + 32] for i in range(0, len(calibration_faces), 32)]
            self._feeds = iter({"input": prepare_batch(b, preprocessing)} for b in batches)

        def get_next(self):
            return next(self._feeds, None)

    prepared = int8_path.with_name(int8_path.stem + ".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, for the model card (None outside a git checkout)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def export_run(
    run: str | Path,
    out_dir: str | Path,
    data: str | Path | None = None,
    quantize: bool = False,
    calibration_images: int = 512,
    test: bool = True,
) -> Path:
    """Export a run's best weights to ``out_dir/<name>.onnx`` (and ``<name>.int8.onnx`` with
    ``quantize``) and write the model card ``<name>.json``; returns the card's path.

    ``data``: the FER+ folder for the card's metrics (default: the run's); ``test=False`` leaves
    Test out. The files are made and measured in a hidden folder inside ``out_dir`` and moved in
    when done, so a failed export leaves no card, and the card is written once, complete."""
    started = time.perf_counter()
    trained = load_trained(run)
    args = trained.info["args"]
    data = data or args["data"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = load_labelled(data, "train", args["label_mode"])
    fill_training_priors(trained, train)
    splits = {"valid": load_labelled(data, "valid")}
    if test:
        splits["test"] = load_labelled(data, "test")

    for stale in out_dir.glob(f".{trained.name}-export-*"):  # what a killed export left behind
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{trained.name}-export-") as staging:
        files, embedding_size = write_onnx_files(trained, Path(staging), train.images if quantize else None,
                                                 calibration_images)
        card = model_card(trained, files, len(train.head(args.get("subset"))), splits)
        card["output"]["embedding"] = {"name": EMBEDDING_OUTPUT, "size": embedding_size}
        card["metrics"] = measure_files(card, Path(staging), splits)
        if quantize:
            card["quantization"] = {
                "method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations",
                "calibration_images": int(min(calibration_images, len(train))),
                "valid_accuracy_fp32": card["metrics"]["fp32"]["valid"]["accuracy"],
                "valid_accuracy_int8": card["metrics"]["int8"]["valid"]["accuracy"],
            }
        for file in files.values():
            (Path(staging) / file).replace(out_dir / file)
    card["export"]["seconds"] = round(time.perf_counter() - started, 1)
    card_path = out_dir / f"{trained.name}.json"
    return write_whole(card_path, json_text(card, indent=2))  # a reader never sees half a card


def write_onnx_files(trained: TrainedModel, folder: Path, calibration_faces: np.ndarray | None,
                     calibration_images: int) -> tuple[dict[str, str], int]:
    """``<name>.onnx`` in ``folder`` and, given faces to calibrate on, ``<name>.int8.onnx``
    (``calibration_images`` of them, drawn with a fixed seed), each with its ``embedding`` output;
    the card's ``files`` and the embedding's size."""
    files = {"fp32": f"{trained.name}.onnx"}
    export_onnx(trained.model, trained.preprocessing.input_size, folder / files["fp32"])
    if calibration_faces is not None:
        files["int8"] = f"{trained.name}.int8.onnx"
        chosen = np.random.default_rng(0).permutation(len(calibration_faces))[:calibration_images]
        quantize_int8(folder / files["fp32"], folder / files["int8"], calibration_faces[chosen],
                      trained.preprocessing)
    sizes = {add_embedding_output(folder / file) for file in files.values()}  # after quantizing
    return files, sizes.pop()


def add_embedding_output(path: Path) -> int:
    """Give the member's ONNX file at ``path`` a second output, ``embedding`` (N, D) float32: the
    pooled features its classifier reads (the one ``Flatten``'s output, exposed through an
    ``Identity``, so ``logits`` are computed exactly as before). Rewrites the file; returns D.
    A file that has the output already is left as it is. UserError for a graph without exactly
    one ``Flatten``."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    if not any(output.name == EMBEDDING_OUTPUT for output in graph.output):
        flatten = [node for node in graph.node if node.op_type == "Flatten"]
        if len(flatten) != 1:
            raise UserError(f"{path}: {len(flatten)} Flatten nodes; expected the one before the classifier")
        graph.node.append(helper.make_node("Identity", [flatten[0].output[0]], [EMBEDDING_OUTPUT],
                                           name="embedding_output"))
        graph.output.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", None]))
        onnx.save(model, str(path))
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[-1]
    return int(session.run([EMBEDDING_OUTPUT], {session.get_inputs()[0].name: np.zeros((1, 3, size, size), np.float32)})[0].shape[1])


def model_card(trained: TrainedModel, files: dict[str, str], train_size: int,
               splits: dict[str, LabelledSplit]) -> dict[str, Any]:
    """The card of ``trained`` exported as ``files``, its ``metrics`` still empty (``measure_files``)
    and ``export`` without its ``seconds``; ``train_size``: the images the run trained on."""
    args = trained.info["args"]
    name = trained.name
    class_prior = trained.class_prior
    assert class_prior is not None  # fill_training_priors recorded it
    size = trained.preprocessing.input_size
    start = trained.info.get("initialisation") or initialisation(args.get("weights"), args.get("init"), name)
    return {
        "format": CARD_FORMAT,
        "name": name,
        "architecture": f"torchvision {name}, {describe(start)} on FER+",
        "classes": list(EMOTIONS),
        "files": files,
        "default_variant": "fp32",
        "input": {"name": "input", "shape": ["batch", 3, size, size], "dtype": "float32"},
        "output": {"name": "logits", "kind": "logits", "apply": "softmax",
                   "logit_adjust": trained.logit_adjust, "sampled_prior": trained.sampled_prior},
        "class_prior": [round(float(p), 6) for p in class_prior],
        "preprocessing": trained.preprocessing.to_dict(),
        "training": {
            "label_mode": args["label_mode"],
            "initialisation": start,
            "args": args,
            "best_epoch": trained.info.get("epoch", -1) + 1,
            "train_wall_seconds": round(trained.info.get("train_seconds", 0.0), 1),
            "machine": trained.info.get("machine"),
            "torch": trained.info.get("torch", str(torch.__version__)),
        },
        "dataset": {
            "name": "FER+",
            "protocol": "valid and test: Microsoft FER+ majority: single votes dropped, label = emotion "
                        "with more than half of the remaining votes, unknown/not-a-face left out; train: "
                        "the images the training's label_mode keeps",
            "split_sizes": {"train": train_size, **{k: len(v) for k, v in splits.items()}},
        },
        "metrics": {},
        "export": {
            "opset": OPSET,
            "git_commit": git_commit(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.system()}, onnxruntime CPU",
        },
    }


def measure_files(card: dict, folder: Path, splits: dict[str, LabelledSplit]) -> dict[str, dict]:
    """Metrics per variant (fp32, int8) and split of the files in ``folder``, read through ONNX
    Runtime as users will (``OnnxClassifier``, from a working copy of ``card`` written there)."""
    draft = folder / f"{card['name']}.json"
    draft.write_text(json_text(card))
    return {variant: _split_metrics(OnnxClassifier(draft, variant), splits) for variant in card["files"]}


def _split_metrics(classifier: OnnxClassifier, splits: dict) -> dict:
    metrics = {}
    for split_name, split in splits.items():
        metrics[split_name] = evaluate_on_split(classifier.predict_proba, split).to_dict()
    return metrics
