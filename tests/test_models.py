"""Every model at two input sizes; local ImageNet weights; nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import need

torch = need("torch")
tv_models = need("torchvision.models")

from fer_ensemble.models import create_model, list_models  # noqa: E402 - after the check for torch


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("input_size", [48, 96])
def test_forward_shape_and_recorded_input_size(name: str, input_size: int) -> None:
    model = create_model(name, input_size=input_size).eval()
    assert model.preprocessing.input_size == input_size
    with torch.no_grad():
        logits = model(torch.randn(2, 3, input_size, input_size))
    assert logits.shape == (2, 8)
    assert torch.isfinite(logits).all()


def test_both_members_are_listed() -> None:
    assert set(list_models()) == {"resnet50", "mobilenet_v2"}
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vgg13")


@pytest.mark.parametrize(("name", "builder"), [("resnet50", tv_models.resnet50),
                                              ("mobilenet_v2", tv_models.mobilenet_v2)])
def test_local_imagenet_weights_load_into_the_backbone(name: str, builder, tmp_path: Path) -> None:
    """A torchvision ImageNet-shaped state dict (made here, 1000 classes) from a local file."""
    torch.manual_seed(1)
    imagenet = builder(weights=None, num_classes=1000)
    path = tmp_path / f"{name}-imagenet.pth"
    torch.save(imagenet.state_dict(), path)
    model = create_model(name, weights=path)
    own = model.state_dict()
    backbone_keys = [k for k in imagenet.state_dict() if k in own and not k.startswith(("fc.", "classifier."))]
    assert len(backbone_keys) > 100
    for key in backbone_keys:
        torch.testing.assert_close(own[key], imagenet.state_dict()[key])
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 8)


def test_weights_of_another_architecture_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(tv_models.mobilenet_v2(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit resnet50"):
        create_model("resnet50", weights=path)
