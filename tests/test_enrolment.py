"""The guided enrolment: its state machine (prompts, countdown, refusals, redo), the webcam's
``--enrol`` / ``e`` key driven by a clip of one taiwan-posed performer's photos in the order the
prompts ask (assembled at test time, never committed), and its drawing."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from support import cli_in_process, run_cli

from fer_ensemble.constants import BLENDSHAPES, EMOTIONS
from fer_ensemble.runtime.drawing import draw_prompt, layout_faces
from fer_ensemble.runtime.enrolment import ENROL_ORDER, EnrolmentOptions, GuidedEnrolment
from fer_ensemble.runtime.face import Face
from fer_ensemble.runtime.profile import Profile
from fer_ensemble.runtime.recognizer import EmotionRecognizer


class FakeEnsemble:
    def require_embeddings(self) -> None:
        pass


class FakeReader:
    """A recognizer whose frames are dicts: ``boxes`` (the faces in view) and ``crop`` (what the
    face looks like: a 64 x 64 array); its embeddings say which expression the frame was."""

    ensemble = FakeEnsemble()

    def find(self, frame, boxes=None):
        return frame, list(frame["boxes"])

    def check_crop(self, frame, box, size):
        return frame["crop"]

    def enrolment_face(self, frame, box):
        return np.full(8, 1 / 8, np.float32), np.full((2, 4), frame.get("label", 0), np.float32)


def sharp(seed: int) -> np.ndarray:
    """A 64 x 64 crop with detail (high Laplacian variance), different for each seed."""
    return np.random.default_rng(seed).integers(0, 256, (64, 64)).astype(np.uint8)


def frame(seed: int, faces: int = 1, crop: np.ndarray | None = None) -> dict:
    return {"boxes": [(10 + 50 * i, 10, 40, 40) for i in range(faces)], "crop": sharp(seed) if crop is None else crop}


def fitted(native, embeddings, labels, blendshapes=None):
    """What the enrolment hands to its fit: kept for the test to look at."""
    fitted.args = (native, embeddings, labels)
    fitted.blendshapes = blendshapes
    return Profile.fit(embeddings.reshape(-1, embeddings.shape[-1]), np.repeat(labels, embeddings.shape[1]), c=1.0)


def test_a_guided_enrolment_counts_down_refuses_what_it_cannot_use_and_fits_a_profile() -> None:
    options = EnrolmentOptions(classes=("neutral", "anger"), captures=2, countdown_s=1.0, interval_s=0.2)
    enrolment = GuidedEnrolment(FakeReader(), fitted, options)
    state = enrolment.update(frame(0), 0.0)
    assert (state.phase, state.expression, state.step, state.steps) == ("countdown", "neutral", 1, 2)
    assert state.message == "1/2 show neutral in 1"
    assert enrolment.update(frame(0), 0.5).remaining_s == pytest.approx(0.5)
    refusals = [enrolment.update(frame(1, faces=0), 1.0).refused, enrolment.update(frame(1, faces=2), 1.3).refused,
                enrolment.update(frame(1, crop=np.full((64, 64), 128, np.uint8)), 1.6).refused]
    assert refusals == ["no face in view", "2 faces in view: only the person enrolling, please",
                        "the face is blurred: hold still, or more light"]
    state = enrolment.update(frame(1), 1.9)
    assert (state.phase, state.captured, state.refused, state.box) == ("capture", 1, None, (10, 10, 40, 40))
    assert enrolment.update(frame(2), 2.0).captured == 1  # too soon after the last capture: not even tried
    still = enrolment.update(frame(1), 2.2)  # the same picture again (a frozen camera)
    assert still.refused == "the same picture as the last capture (is the camera frozen?)" and still.captured == 1
    assert "refused: the same picture" in still.message
    state = enrolment.update(frame(2), 2.4)
    assert (state.phase, state.expression, state.captured) == ("countdown", "anger", 0)
    for t, seed in ((3.5, 3), (3.8, 4)):
        state = enrolment.update(dict(frame(seed), label=5), t)
    assert state.phase == "done" and state.message == "enrolment done: the profile is in use"
    assert state.box == (10, 10, 40, 40)  # the face enrolled: the caller gives its track the profile
    native, embeddings, labels = fitted.args
    assert native.shape == (4, 8) and embeddings.shape == (4, 2, 4) and labels.tolist() == [0, 0, 4, 4]
    assert enrolment.profile is not None and enrolment.profile.classes == ["neutral", "anger"]
    assert enrolment.update(frame(9), 9.0) is state  # done stays done


class FakeGeometry:
    """A geometry reader that finds blendshapes in every face but the second it is shown."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, image, boxes):
        self.reads += 1
        shapes = SimpleNamespace(blendshapes={name: self.reads / 10 for name in BLENDSHAPES})
        return [None if self.reads == 2 else shapes for _ in boxes]


def test_with_a_geometry_reader_each_capture_brings_its_blendshapes_to_the_fit() -> None:
    options = EnrolmentOptions(classes=("neutral", "happiness"), captures=2, countdown_s=0.0, interval_s=0.0)
    enrolment = GuidedEnrolment(FakeReader(), fitted, options, geometry=FakeGeometry())
    for t in range(4):
        enrolment.update(dict(frame(t), label=t // 2), float(t))
    assert enrolment.state.phase == "done" and fitted.blendshapes.shape == (4, 51)
    np.testing.assert_allclose(fitted.blendshapes[[0, 2, 3], 0], [0.1, 0.3, 0.4])
    assert np.isnan(fitted.blendshapes[1]).all()  # the landmarker missed that face: a NaN row
    enrolment = GuidedEnrolment(FakeReader(), fitted, options)
    for t in range(4):
        enrolment.update(dict(frame(t), label=t // 2), float(t))
    assert fitted.blendshapes is None  # no geometry reader: none asked for


def test_redo_takes_the_current_expression_again_or_the_previous_one() -> None:
    options = EnrolmentOptions(classes=("neutral", "happiness", "fear"), captures=1, countdown_s=0.0, interval_s=0.0)
    enrolment = GuidedEnrolment(FakeReader(), fitted, options)
    enrolment.update(frame(0), 0.0)  # neutral captured
    assert enrolment.state.expression == "happiness"
    assert enrolment.redo() == "neutral"  # happiness has nothing yet: the previous one again
    assert enrolment.captures == [] and enrolment.state.phase == "countdown"
    for t, seed in enumerate((1, 2, 3)):
        enrolment.update(frame(seed), float(t + 1))
    assert enrolment.state.phase == "done"
    assert enrolment.redo() == "fear" and enrolment.profile is None  # after the last: the last again
    enrolment.update(frame(4), 10.0)
    assert enrolment.state.phase == "done" and [c.label for c in enrolment.captures] == [0, 1, 6]


def test_a_profile_that_cannot_be_fitted_fails_with_the_reason() -> None:
    def refuse(*args):  # a fit of three arguments, as before geometry: still called so
        raise ValueError("labels are class indices in [0, 8)")

    enrolment = GuidedEnrolment(FakeReader(), refuse, EnrolmentOptions(("neutral", "fear"), 1, 0.0, 0.0))
    enrolment.update(frame(0), 0.0)
    state = enrolment.update(frame(1), 1.0)
    assert state.phase == "failed" and state.message == "enrolment failed: labels are class indices in [0, 8)"


@pytest.mark.parametrize("options", [{"classes": ("neutral",)}, {"classes": ("neutral", "joy")},
                                     {"classes": ("fear", "fear")}, {"captures": 0}, {"countdown_s": -1.0},
                                     {"interval_s": float("nan")}])
def test_bad_enrolment_options_are_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        EnrolmentOptions(**options)


def test_the_prompt_and_a_profiled_label_are_drawn() -> None:
    canvas = np.full((240, 320, 3), 200, np.uint8)
    draw_prompt(canvas, ["1/7 show anger: hold it (0/3) - refused: no face in view"], refused=True)
    band = canvas[200:]
    assert band.mean() < 120 and (band[..., 2] > 200).any()  # dark band, amber text
    assert (canvas[:150] == 200).all()  # nothing above it
    face = Face.from_probabilities((100, 60, 80, 80), np.eye(8)[4], EMOTIONS, track_id=1, profiled=True)
    assert layout_faces([face], 8, 320, 240)[0].label.text == "#1 anger 100% profile"
    face.profiled = False
    assert layout_faces([face], 8, 320, 240)[0].label.text == "#1 anger 100%"


PERFORMER = "P03"
CAPTURES = 2


def performer_clip(taiwan_posed: Path, path: Path, fps: int = 5) -> tuple[list[str], list[str], list[dict]]:
    """A clip of one performer following the prompts: per expression of ``ENROL_ORDER``, their first
    photo through the countdown and the first capture (4 s), then their second (1 s), each drawn
    at 1.5x on a grey 640 x 480 frame, Motion JPEG (a still frame repeats exactly, as a frozen
    camera's does). Returns the photos shown, their labels, and the performer's other rows."""
    rows = [r for r in csv.DictReader((taiwan_posed / "labels.csv").open()) if r["performer"] == PERFORMER]
    shown = {c: sorted(r["file"] for r in rows if r["label"] == c)[:CAPTURES] for c in ENROL_ORDER}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for name in ENROL_ORDER:
        for i, file in enumerate(shown[name]):
            canvas = np.full((480, 640, 3), 90, np.uint8)
            canvas[48:432, 128:512] = cv2.resize(cv2.imread(str(taiwan_posed / "images" / file)), (384, 384))
            for _ in range(fps * (4 if i == 0 else 1)):
                writer.write(canvas)
    writer.release()
    files = [f for c in ENROL_ORDER for f in shown[c]]
    return files, [c for c in ENROL_ORDER for _ in shown[c]], [r for r in rows if r["file"] not in files]


@pytest.mark.parametrize("geometry", [False, True], ids=["embeddings", "with-blendshapes"])
def test_the_webcam_enrols_a_performer_from_a_clip_that_follows_the_prompts(taiwan_posed: Path, tmp_path: Path,
                                                                            geometry: bool) -> None:
    """The guided enrolment walked through end to end with a video file as the camera: the profile
    it saves reads the performer's other photos as a profile enrolled from the same photos does
    (``evaluate --enrol``'s reading), and the face on screen is read through it from then on; with
    ``--geometry``, the profile holds the captures' blendshapes and is read with them."""
    clip, saved = tmp_path / "clip.avi", tmp_path / "me.json"
    files, labels, others = performer_clip(taiwan_posed, clip)
    result = run_cli("webcam", "--source", str(clip), "--no-window", "--unpaced", "--enrol",
                     "--enrol-captures", str(CAPTURES), "--save-profile", str(saved),
                     *(["--geometry"] if geometry else []))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    steps = [line["enrolment"] for line in lines if "enrolment" in line]
    assert steps[-1]["phase"] == "done" and "face #1 is read through the profile from now on" in result.stderr
    asked = list(dict.fromkeys(s["expression"] for s in steps if s["expression"]))
    assert asked == list(ENROL_ORDER)
    assert lines[-1]["faces"][0]["profiled"] and not lines[0]["faces"][0]["profiled"]
    assert "self-check" in result.stderr

    recognizer = EmotionRecognizer(geometry=geometry)
    images = {f: cv2.imread(str(taiwan_posed / "images" / f)) for f in files + [r["file"] for r in others]}
    direct = recognizer.enrol([images[f] for f in files], labels)
    from_clip = Profile.load(saved)
    assert from_clip.classes == direct.classes and from_clip.counts.tolist() == direct.counts.tolist()
    assert (from_clip.blendshapes is not None) == (direct.blendshapes is not None) == geometry

    def accuracy(profile: Profile | None) -> float:
        read = [max(recognizer.predict(images[r["file"]], profile=profile), key=lambda f: f.box[2]).label
                for r in others]
        return float(np.mean([a == r["label"] for a, r in zip(read, others)]))

    plain, enrolled, followed = accuracy(None), accuracy(direct), accuracy(from_clip)
    assert followed >= enrolled - 0.05, (plain, enrolled, followed)
    assert followed >= plain + 0.25, (plain, enrolled, followed)


def test_save_profile_is_checked_before_the_camera_opens(tmp_path: Path) -> None:
    photo = tmp_path / "mine.json"
    photo.write_text("my notes\n")
    cases = {("--save-profile", str(photo), "--enrol"): "already exists and is not an earlier output",
             ("--save-profile", str(tmp_path / "p.json")): "--save-profile without a window needs --enrol"}
    for extra, message in cases.items():
        result = cli_in_process("webcam", "--source", str(tmp_path / "none.mp4"), "--no-window", *extra)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert photo.read_text() == "my notes\n"


def test_the_new_profile_goes_to_the_face_enrolled_or_to_none() -> None:
    """enrolled_track: the live track overlapping the last capture most, by IoU 0.3 at least; a
    face elsewhere (someone else) never takes the enrolled person's profile."""
    from types import SimpleNamespace

    from fer_ensemble.runtime.enrolment import enrolled_track

    tracks = [SimpleNamespace(track_id=1, box=(0, 0, 50, 50), missed=0),
              SimpleNamespace(track_id=2, box=(200, 0, 50, 50), missed=0),
              SimpleNamespace(track_id=3, box=(205, 5, 50, 50), missed=1)]
    assert enrolled_track(tracks, (195, 0, 50, 50)) == 2
    assert enrolled_track(tracks, (100, 100, 50, 50)) is None and enrolled_track(tracks, None) is None
    assert enrolled_track(tracks[2:], (205, 5, 50, 50)) is None  # a track missed in this frame is not "in view"
