"""Model factory: torchvision ResNet50 and MobileNetV2 heads for the eight FER+ emotions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from fer_ensemble.constants import EMOTIONS, MODEL_NAMES
from fer_ensemble.errors import UserError
from fer_ensemble.preprocess import Preprocessing


def _resnet50(num_classes: int, dropout: float) -> nn.Module:
    # zero-initialised last BN of each block: from scratch, torchvision's default init gives
    # logits with a standard deviation of ~9 and a first epoch that learns almost nothing
    model = tv_models.resnet50(weights=None, zero_init_residual=True)
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    return model


def _mobilenet_v2(num_classes: int, dropout: float) -> nn.Module:
    model = tv_models.mobilenet_v2(weights=None, dropout=dropout)
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


_BUILDERS: dict[str, Callable[[int, float], nn.Module]] = {
    "resnet50": _resnet50,
    "mobilenet_v2": _mobilenet_v2,
}
_CLASSIFIER_PREFIXES = {"resnet50": ("fc.",), "mobilenet_v2": ("classifier.",)}


assert tuple(sorted(_BUILDERS)) == MODEL_NAMES


def classifier_prefixes(name: str) -> tuple[str, ...]:
    """The state-dict key prefixes of ``name``'s classifier (what ImageNet weights do not give)."""
    return _CLASSIFIER_PREFIXES[name]


def list_models() -> list[str]:
    """Names ``create_model`` accepts."""
    return list(MODEL_NAMES)


def create_model(
    name: str,
    num_classes: int = len(EMOTIONS),
    input_size: int = 224,
    weights: str | Path | None = None,
    dropout: float = 0.2,
) -> nn.Module:
    """Build a member of the ensemble.

    ``input_size`` is recorded on the model (``model.preprocessing``) and travels with every
    checkpoint and export. ``weights`` is an optional local file of ImageNet weights (a torchvision
    state dict); its classifier is left out, everything else must match. Nothing is downloaded.
    """
    if name not in _BUILDERS:
        raise UserError(f"unknown model {name!r}; choose from {list_models()}")
    model = _BUILDERS[name](num_classes, dropout)
    if weights is not None:
        load_backbone_weights(model, name, weights)
    # torch's stubs type Module.__setattr__ for tensors and modules only; any value is allowed
    model.name = name  # type: ignore[assignment]
    model.preprocessing = Preprocessing(input_size=input_size)  # type: ignore[assignment]
    return model


def model_preprocessing(model: nn.Module) -> Preprocessing:
    """The ``Preprocessing`` that ``create_model`` recorded on ``model``; TypeError for a module it
    did not build."""
    preprocessing = getattr(model, "preprocessing", None)
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError(f"{type(model).__name__} has no Preprocessing: not a model made by create_model")
    return preprocessing


def read_weights(path: str | Path, what: str = "weights file") -> dict:
    """The dict a ``.pt`` file holds, read with ``weights_only`` (no code runs); UserError naming
    ``path`` when it is missing or not a PyTorch weights file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no {what} at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch's own errors: all mean "not a weights file"
        raise UserError(f"{path}: not a PyTorch {what} ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a PyTorch {what} (it holds a {type(state).__name__}, not a dict)")
    return state


def load_backbone_weights(model: nn.Module, name: str, path: str | Path) -> None:
    """Load an ImageNet state dict into everything but the classifier."""
    state = read_weights(path)
    if "model" in state and isinstance(state["model"], dict):  # read_weights: a dict
        state = state["model"]
    backbone = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES[name])}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    missing = [k for k in missing if not k.startswith(_CLASSIFIER_PREFIXES[name])]
    if missing or unexpected:
        raise UserError(
            f"{path} does not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
