"""One exported member: an ONNX file plus its model card (torch-free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_ensemble.errors import UserError, read_json_object
from fer_ensemble.preprocess import Preprocessing, prepare_batch
from fer_ensemble.prior import prior_logit_offset
from fer_ensemble.runtime.onnx import create_session

EMBEDDING = "embedding"
"""The name of a member's second output, its pooled features (``fer-ensemble export`` writes it)."""

CARD_FORMAT = "fer-ensemble/model-card/v1"
"""The ``format`` of the model cards this version reads (``read_card``) and ``export`` writes."""


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of (N, C) ``logits`` divided by ``temperature`` (> 0; the temperature
    scaling of Guo et al. 2017, "On Calibration of Modern Neural Networks"): (N, C) probabilities,
    each row summing to 1, in the dtype of ``logits``. The row maximum is subtracted first, so large
    logits do not overflow."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def find_card(path: Path) -> Path:
    """The model card of an ONNX file: ``name.json`` beside ``name.onnx`` or ``name.int8.onnx``."""
    stem = path.name.removesuffix(".onnx").removesuffix(".int8")
    card = path.with_name(stem + ".json")
    if not card.is_file():
        raise UserError(f"no model card {card.name} beside {path}")
    return card


CARD_KEYS = ("name", "classes", "files", "preprocessing")
"""The keys a model card must have (``read_card`` refuses one without them)."""


def read_card(path: str | Path) -> dict:
    """A model card's contents: a JSON object of format ``CARD_FORMAT`` with ``CARD_KEYS``
    (UserError naming the file and what is wrong otherwise)."""
    card = read_json_object(path, "model card", CARD_KEYS, CARD_FORMAT)
    if not isinstance(card["files"], dict) or not card["files"]:
        raise UserError(f"{path}: not a model card ('files' must map variants to ONNX file names)")
    return card


def resolve_member(path: str | Path, variant: str | None = None) -> tuple[dict, Path, str]:
    """A member's card, model file and variant, checked (UserError otherwise) without loading the
    model. ``path`` is a card (``variant`` picks the file) or an ONNX file with its card beside it."""
    path = Path(path)
    card_path = path if path.suffix == ".json" else find_card(path)
    card = read_card(card_path)
    if path.suffix == ".json":
        variant = variant or card.get("default_variant", "fp32")
        if variant not in card["files"]:
            raise UserError(f"{card_path}: no {variant!r} file (it has {', '.join(card['files'])})")
        model_path = card_path.with_name(card["files"][variant])
    else:
        model_path = path
        variant = next((k for k, v in card["files"].items() if v == path.name), "fp32")
    if not model_path.is_file():
        raise UserError(f"no model file {model_path.name} beside its card {card_path}")
    return card, model_path, variant


class OnnxClassifier:
    """Class probabilities for face crops from an exported member.

    ``path`` is a model card (``.json``; ``variant`` picks ``fp32`` or ``int8``) or an ONNX file
    with its card beside it. ``logits`` are always under FER+'s class prior: a network trained
    with the logit-adjusted loss or class-aware sampling gets FER+'s prior added back
    (``fer_ensemble.prior.prior_logit_offset``).
    """

    def __init__(self, path: str | Path, variant: str | None = None, threads: int | None = None):
        self.card, model_path, variant = resolve_member(path, variant)
        self.variant = variant
        self.model_path = model_path
        self.name: str = self.card["name"]
        self.classes: tuple[str, ...] = tuple(self.card["classes"])
        self.preprocessing = Preprocessing.from_dict(self.card["preprocessing"])
        self.class_prior: list[float] | None = self.card.get("class_prior")
        output = self.card.get("output", {})
        self._offset = prior_logit_offset(self.class_prior, output.get("logit_adjust", 0.0),
                                          output.get("sampled_prior"))
        self.session = create_session(model_path, threads)  # UserError for a file ONNX Runtime cannot load
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self._logits_name = outputs[0]
        self.embedding_size: int | None = (output.get("embedding") or {}).get("size") if EMBEDDING in outputs else None
        """D of the member's ``embedding`` output (its pooled features), None for a file without one."""

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits under FER+'s prior for an already preprocessed batch (N, 3, S, S)."""
        return self.logits_and_embeddings(batch, embeddings=False)[0]

    def logits_and_embeddings(self, batch: np.ndarray, embeddings: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) logits under FER+'s prior and, when asked for and the file has them, the (N, D)
        float32 embeddings (else None) of a preprocessed batch (N, 3, S, S), in one run."""
        wanted = [self._logits_name] + ([EMBEDDING] if embeddings and self.embedding_size else [])
        found = self.session.run(wanted, {self.input_name: batch})
        logits = found[0] if self._offset is None else found[0] + self._offset
        return logits, (found[1] if len(found) > 1 else None)

    def predict_proba(self, faces, batch_size: int = 256) -> np.ndarray:
        """(N, 8) float32 probabilities, in ``classes`` order and under FER+'s class prior, for a
        sequence of N face crops (each an (H, W) gray or (H, W, 3) BGR uint8 array of any size,
        resized to the card's ``input_size``), in batches of ``batch_size``; (0, 8) for none."""
        outputs = [
            softmax(self.logits(prepare_batch(faces[i : i + batch_size], self.preprocessing)))
            for i in range(0, len(faces), batch_size)
        ]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.classes)), np.float32)
