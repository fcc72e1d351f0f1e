"""Training, resume, DDP, evaluation, export parity, quantization and the GPU script (CPU config)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import REPO, TINY_TRAIN, need, run_cli, run_tool, script_module

torch = need("torch")

from fer_ensemble.constants import EMOTIONS  # noqa: E402 - after the check for torch
from fer_ensemble.data import load_labelled  # noqa: E402
from fer_ensemble.export import load_trained  # noqa: E402
from fer_ensemble.runtime import OnnxClassifier  # noqa: E402


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_epochs_lower_the_loss(tiny_run: Path) -> None:
    rows = metrics(tiny_run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert all({"valid_accuracy", "valid_macro_f1"} <= set(r) for r in rows)
    assert (tiny_run / "curves.png").stat().st_size > 1000
    checkpoint = torch.load(tiny_run / "checkpoint.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "ema", "epoch", "args"} <= set(checkpoint)
    assert checkpoint["epoch"] == 1 and checkpoint["args"]["input_size"] == 32
    best = torch.load(tiny_run / "best.pt", weights_only=False)
    assert best["valid"]["valid_accuracy"] == max(r["valid_accuracy"] for r in rows)


def test_kill_and_resume_gives_the_same_weights(ferplus: Path, tmp_path: Path) -> None:
    args = [*TINY_TRAIN, "--data", str(ferplus), "--epochs", "3", "--subset", "512"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_cli("train", *args, "--out", str(straight))

    process = subprocess.Popen([sys.executable, "-m", "fer_ensemble.cli", "train", *args,
                                "--out", str(killed)], cwd=REPO)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoint.pt").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert state["epoch"] < 2, "the run finished before it could be killed"
    # issue 38, item 4: a moved run resumes where it now is (the recorded --out is information only)
    moved = tmp_path / "moved"
    shutil.move(killed, moved)
    run_cli("train", "--resume", "--out", str(moved), "--no-progress")
    assert not killed.exists()
    killed = moved

    final_straight = torch.load(straight / "checkpoint.pt", weights_only=False)
    final_resumed = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert final_resumed["epoch"] == final_straight["epoch"] == 2
    for key in ("model", "ema"):
        for name, tensor in final_straight[key].items():
            torch.testing.assert_close(final_resumed[key][name], tensor, rtol=0, atol=0, msg=name)
    assert [r["epoch"] for r in metrics(killed)] == [1, 2, 3]
    assert [r["train_loss"] for r in metrics(killed)] == [r["train_loss"] for r in metrics(straight)]
    # issue 22, item 11: a finished run says so; a run folder is never overwritten without --resume
    done = run_cli("train", "--resume", "--out", str(straight), "--no-progress")
    assert "the run is done (3 of 3 epochs)" in done.stdout
    again = run_cli("train", *args, "--out", str(straight), check=False)
    assert again.returncode == 2 and "holds a run (checkpoint.pt): add --resume" in again.stderr
    assert [r["epoch"] for r in metrics(straight)] == [1, 2, 3]


def test_evaluate_a_checkpoint(tiny_run: Path, ferplus: Path, tmp_path: Path) -> None:
    result = run_cli("evaluate", str(tiny_run), "--data", str(ferplus), "--split", "valid",
                     "--json", "--out", str(tmp_path))
    report = json.loads(result.stdout)
    assert report["n_images"] == 3_191
    assert {"accuracy", "macro_f1", "per_class", "accuracy_7class", "ece"} <= set(report)
    assert sum(map(sum, report["confusion"])) == 3_191
    assert report["accuracy"] == pytest.approx(
        sum(report["confusion"][i][i] for i in range(8)) / 3_191)
    assert (tmp_path / "mobilenet_v2-valid-confusion.png").stat().st_size > 1000
    text = run_cli("evaluate", str(tiny_run), "--data", str(ferplus), "--split", "valid").stdout
    assert "accuracy" in text and "contempt" in text


@pytest.fixture(scope="module")
def exported(tiny_run: Path, ferplus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    (out / ".mobilenet_v2-export-killed").mkdir()  # what an export killed mid-way leaves behind
    run_cli("export", str(tiny_run), "--out", str(out), "--data", str(ferplus), "--int8",
            "--calibration-images", "256")
    return out / "mobilenet_v2.json"


def test_model_card(exported: Path, tiny_run: Path) -> None:
    card = json.loads(exported.read_text())
    assert sorted(p.name for p in exported.parent.iterdir()) == [  # no staging folder, stale or new
        "mobilenet_v2.int8.onnx", "mobilenet_v2.json", "mobilenet_v2.onnx"]
    assert card["classes"] == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                               "fear", "contempt"]
    assert card["preprocessing"]["input_size"] == 32
    assert card["training"]["label_mode"] == "crossentropy"
    assert card["training"]["args"]["subset"] == 768
    assert card["dataset"]["split_sizes"] == {"train": 768, "valid": 3_191, "test": 3_137}
    assert card["metrics"]["fp32"]["test"]["n_images"] == 3_137
    best = torch.load(tiny_run / "best.pt", weights_only=False)
    assert card["training"]["best_epoch"] == best["epoch"] + 1
    assert card["export"]["date"] and card["training"]["train_wall_seconds"] > 0


def test_onnx_matches_pytorch_on_real_faces(exported: Path, tiny_run: Path, ferplus: Path) -> None:
    faces = load_labelled(ferplus, "test").images[:512]
    onnx_probs = OnnxClassifier(exported, "fp32").predict_proba(faces)
    torch_probs = load_trained(tiny_run).predict_proba(faces)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-3, rtol=0)
    top2 = np.sort(torch_probs, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4  # exact ties are not a disagreement
    assert clear.mean() > 0.95
    assert (onnx_probs.argmax(1) == torch_probs.argmax(1))[clear].all()


def test_int8_quantization_is_recorded(exported: Path, ferplus: Path) -> None:
    card = json.loads(exported.read_text())
    folder = exported.parent
    int8, fp32 = folder / card["files"]["int8"], folder / card["files"]["fp32"]
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size
    quant = card["quantization"]
    assert quant["valid_accuracy_int8"] == card["metrics"]["int8"]["valid"]["accuracy"]
    assert abs(quant["valid_accuracy_int8"] - quant["valid_accuracy_fp32"]) < 0.05
    faces = load_labelled(ferplus, "valid").images[:512]
    agree = OnnxClassifier(int8).predict_proba(faces).argmax(1) == \
        OnnxClassifier(fp32).predict_proba(faces).argmax(1)
    assert agree.mean() > 0.9


def test_ddp_with_two_cpu_processes(ferplus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "fer_ensemble.cli", "train", *TINY_TRAIN, "--data", str(ferplus), "--out", str(out), "--epochs", "1",
         "--subset", "512", "--precision", "fp32"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "x2:" in result.stdout  # two processes joined one group
    rows = metrics(out)
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"])
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 0


def test_a_rebuilt_schedule_stands_where_the_run_is() -> None:
    """A time-budget re-plan rebuilds the schedule at the step reached: the optimizer's learning
    rate is the new plan's at that step, and the next steps follow the new plan."""
    import argparse
    import warnings

    from fer_ensemble.training.train import build_scheduler, warmup_cosine

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    args = argparse.Namespace(epochs=100, warmup_epochs=1.0)
    scheduler = build_scheduler(optimizer, args, steps_per_epoch=10)
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    args.epochs = 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = build_scheduler(optimizer, args, steps_per_epoch=10, steps_done=scheduler.last_epoch)
        plan = warmup_cosine(50, 10)
        assert scheduler.last_epoch == 25
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * plan(25))
        for _ in range(25):
            optimizer.step()
            scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_gpu_script_in_its_cpu_configuration(ferplus: Path, taiwan_posed: Path, tmp_path: Path) -> None:
    """Both members (two sampling strengths each) run side by side and are scored on packed real
    faces; the run chosen per architecture comes back as fp16 parts within the transfer limits, and
    imports bit for bit."""
    out = tmp_path / "gpu-out"
    rows = (taiwan_posed / "labels.csv").read_text().splitlines()
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(r for r in rows if r.startswith(("file", "01", "02", "03"))) + "\n")  # 3 performers
    checks = tmp_path / "checks.npz"
    run_tool("pack_data", "--labels", str(labels), "--images", str(taiwan_posed / "images"), "--group-by",
             "performer", "--out", str(checks))
    result = subprocess.run(
        [sys.executable, "scripts/train_gpu.py", "--data", str(ferplus), "--out", str(out),
         "--device", "cpu", "--sizes", "32", "--subset", "256", "--epochs", "1", "--seeds", "0",
         "--batch-size", "64", "--runs", str(tmp_path / "runs"), "--recipe=--photo-augment",
         "--models", "resnet50", "mobilenet_v2", "--balance-sampling", "0.5", "0", "--checks", str(checks)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 runs side by side" in result.stdout
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert {f.name for f in files} >= {"resnet50.meta.json", "mobilenet_v2.meta.json", "summary.json"}
    assert len([f for f in files if f.name.startswith("resnet50.part")]) >= 1
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {f"{m}-32px-seed0{s}" for m in ("resnet50", "mobilenet_v2")
                                    for s in ("-balance0.5", "")}
    assert set(summary["chosen"]) == {"resnet50", "mobilenet_v2"}
    for run in summary["runs"].values():
        assert 0 <= run["checks"]["before_accuracy"] <= 1 and str(labels) in run["checks"]["on"]
        assert set(run["checks"]["after_per_class"]) <= set(EMOTIONS) and run["stopped_at_minutes"] is False
    chosen = summary["chosen"]["resnet50"]

    scored = subprocess.run([sys.executable, "scripts/train_gpu.py", "--score", str(tmp_path / "runs" / chosen),
                             "--checks", str(checks)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert json.loads(scored.stdout)["after_accuracy"] == summary["runs"][chosen]["checks"]["after_accuracy"]

    run_tool("gpu_weights", str(out), "--out", str(tmp_path / "imported"))
    best = torch.load(tmp_path / "runs" / chosen / "best.pt", weights_only=False)
    assert best["args"]["photo_augment"] is True
    assert best["args"]["balance_sampling"] == (0.5 if chosen.endswith("balance0.5") else 0.0)
    balanced = torch.load(tmp_path / "runs" / "resnet50-32px-seed0-balance0.5" / "best.pt", weights_only=False)
    assert len(balanced["sampled_prior"]) == 8  # what the rebalanced network saw, for the runtime's offset
    imported = torch.load(tmp_path / "imported" / "resnet50" / "best.pt", weights_only=False)["model"]
    assert imported.keys() == best["model"].keys()
    for key, tensor in best["model"].items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        torch.testing.assert_close(imported[key], expected, rtol=0, atol=0)
    assert load_trained(tmp_path / "imported" / "resnet50").preprocessing.input_size == 32


def test_time_budget_replans_so_the_cosine_schedule_finishes(ferplus: Path, tmp_path: Path) -> None:
    """--time-budget: after two epochs the run sets its epochs from its own pace and ends with
    the learning rate at the end of its cosine, not cut off mid-schedule."""
    out, budget = tmp_path / "budget", 0.25
    result = run_cli("train", *TINY_TRAIN, "--data", str(ferplus), "--out", str(out), "--subset", "256",
                     "--valid-subset", "128", "--epochs", "500", "--time-budget", str(budget),
                     "--warmup-epochs", "0")
    assert "re-planned to" in result.stdout
    rows = metrics(out)
    planned = torch.load(out / "checkpoint.pt", weights_only=False)["args"]["epochs"]
    assert 3 <= planned < 500 and len(rows) == planned
    assert rows[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    seconds = [r["epoch_seconds"] for r in rows]
    expected = sum(seconds[:2]) + (planned - 2) * seconds[1]  # what the plan assumed
    assert expected <= max(budget * 60, sum(seconds[:2]) + seconds[1]) + 1e-6


def test_rare_class_options_shape_the_loss_and_the_sampling() -> None:
    from fer_ensemble.training.engine import shard_batches, target_loss

    logits = torch.randn(6, 8)
    targets = torch.softmax(torch.randn(6, 8), dim=1)
    offset = torch.log(torch.tensor([0.34, 0.27, 0.12, 0.14, 0.09, 0.009, 0.028, 0.009]))
    adjusted = target_loss(logits, targets, "crossentropy", 0.0, logit_offset=offset)
    expected = torch.nn.functional.cross_entropy(logits + offset, targets)
    torch.testing.assert_close(adjusted, expected)

    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = torch.bincount(labels).double()[labels] ** -1.0  # balanced
    generator = torch.Generator().manual_seed(0)
    drawn = torch.cat([batch for _ in range(50) for batch in
                       shard_batches(100, 10, generator, sample_weights=weights)])
    share = (labels[drawn] == 1).double().mean().item()
    assert 0.45 < share < 0.55  # a 10 % class drawn half the time


def test_photo_augmentation_keeps_faces_in_range() -> None:
    from fer_ensemble.preprocess import Preprocessing
    from fer_ensemble.training.augment import AugmentConfig, make_batch

    images = torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8)
    pre = Preprocessing(input_size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    plain = make_batch(images, pre, AugmentConfig(), torch.Generator().manual_seed(0))
    photo = make_batch(images, pre, AugmentConfig.photo(), torch.Generator().manual_seed(0))
    assert photo.shape == plain.shape == (16, 3, 64, 64)
    assert 0.0 <= float(photo.min()) and float(photo.max()) <= 1.0
    assert not torch.equal(photo, plain)


def test_benchmark_train_prints_a_table() -> None:
    result = run_cli("benchmark-train", "--models", "mobilenet_v2", "--sizes", "32",
                     "--steps", "1", "--warmup", "0", "--batch-size", "8")
    assert "| mobilenet_v2 | 32 | bf16 | 8 |" in result.stdout and "x |" in result.stdout


def test_init_fine_tunes_a_trained_member_and_refuses_a_mismatch(tiny_run: Path, ferplus: Path,
                                                                   tmp_path: Path) -> None:
    """--init starts from a member's weights, classifier included; another size is refused."""
    from fer_ensemble.models import create_model
    from fer_ensemble.training.train import load_member_weights

    model = create_model("mobilenet_v2", input_size=32)
    load_member_weights(model, "mobilenet_v2", 32, tiny_run)
    trained = torch.load(tiny_run / "best.pt", weights_only=False)["model"]
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, trained[key].to(tensor.dtype))
    with pytest.raises(ValueError, match="not mobilenet_v2 at 48 px"):
        load_member_weights(create_model("mobilenet_v2", input_size=48), "mobilenet_v2", 48, tiny_run)
    run_cli("train", *TINY_TRAIN, "--data", str(ferplus), "--out", str(tmp_path / "ft"), "--epochs", "1",
            "--init", str(tiny_run), "--lr", "1e-4", "--logit-adjust", "1")
    assert torch.load(tmp_path / "ft" / "best.pt", weights_only=False)["args"]["init"] == str(tiny_run)


def test_priors_of_a_checkpoint_are_recomputed_as_the_trainer_recorded_them(tiny_run: Path, ferplus: Path) -> None:
    """checkpoint.pt keeps no class prior; export fills it from the data exactly as best.pt has it,
    and adds the sampled prior for a run trained with class-aware sampling."""
    from fer_ensemble.export import fill_training_priors

    trained = load_trained(tiny_run / "checkpoint.pt")
    assert trained.class_prior is None
    train = load_labelled(ferplus, "train", trained.info["args"]["label_mode"])
    fill_training_priors(trained, train)
    recorded = torch.load(tiny_run / "best.pt", weights_only=False)["class_prior"]
    np.testing.assert_allclose(trained.class_prior, recorded, rtol=1e-12)
    assert trained.sampled_prior is None
    trained.info["args"]["balance_sampling"] = 1.0
    fill_training_priors(trained, train)
    assert len(trained.sampled_prior) == 8 and max(trained.sampled_prior) < 0.2  # balanced: about 1/8 each


def gpu_script():
    """scripts/train_gpu.py as a module (a script, not part of the package)."""
    return script_module("train_gpu")


def test_gpu_script_stops_runs_still_going_at_its_deadline() -> None:
    """The device tool ends a command after 10 minutes: runs still going at --minutes are stopped
    (their best epoch so far is on disk) so that choosing and saving happen within the call."""
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    started = time.monotonic()
    stopped = gpu_script().wait_for_runs({"slow": slow, "quick": quick}, started + 2)
    assert stopped == ["slow"] and quick.returncode == 0 and slow.returncode is not None
    assert time.monotonic() - started < 20


def test_gpu_script_chooses_on_the_checks_among_runs_near_the_best_on_valid(tmp_path: Path) -> None:
    """With --checks the real faces decide, but only among runs within VALID_WINDOW of the best
    on Valid; without, Valid alone decides. A run without best.pt is never chosen."""
    train_gpu = gpu_script()
    valid = {"resnet50-96px-seed0": 0.890, "resnet50-96px-seed0-balance0.5": 0.885,
             "resnet50-64px-seed0": 0.870, "mobilenet_v2-96px-seed0": 0.880, "mobilenet_v2-64px-seed0": 0.900}
    for name, accuracy in valid.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text(json.dumps({"valid_accuracy": accuracy}) + "\n")
        if name != "mobilenet_v2-64px-seed0":
            (tmp_path / name / "best.pt").write_bytes(b"")
    checks = {"resnet50-96px-seed0": 0.55, "resnet50-96px-seed0-balance0.5": 0.60, "resnet50-64px-seed0": 0.70,
              "mobilenet_v2-96px-seed0": 0.50}
    scores = {name: {"after_accuracy": a} for name, a in checks.items()}
    assert train_gpu.VALID_WINDOW == pytest.approx(0.01)
    assert train_gpu.choose_best(tmp_path, list(valid), scores) == {
        "resnet50": "resnet50-96px-seed0-balance0.5", "mobilenet_v2": "mobilenet_v2-96px-seed0"}
    assert train_gpu.choose_best(tmp_path, list(valid)) == {
        "resnet50": "resnet50-96px-seed0", "mobilenet_v2": "mobilenet_v2-96px-seed0"}


def test_gpu_script_refuses_a_bad_checks_pack_before_training(tmp_path: Path) -> None:
    """A --checks pack that cannot be read is one line before any run starts, not a crash after
    the GPU minutes are spent and before the weights are saved."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "scripts/train_gpu.py", "--data", str(tmp_path), "--out", str(out),
                             "--checks", str(tmp_path / "nope.npz")], capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 1 and result.stderr.strip() == f"train_gpu.py: no packed face set at {tmp_path / 'nope.npz'}"
    assert not out.exists()
