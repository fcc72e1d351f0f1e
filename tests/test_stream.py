"""FaceStream: one video's tracks, smoothed and held over time (seconds, not frames), many streams
per stateless recognizer; the deprecated names of the former stream API; calibrations that leave a
shared ensemble alone."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_ensemble.errors import FerDeprecationWarning
from fer_ensemble.media.inputs import SAMPLES
from fer_ensemble.runtime.deprecation import DEPRECATED
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.recognizer import EmotionRecognizer
from fer_ensemble.runtime.stream import HOLD_S, SMOOTHING_S, FaceStream, StreamOptions
from fer_ensemble.runtime.tracking import EMA_WEIGHT, FRAME_INTERVAL_S, time_weight

BOX = [(130, 40, 200, 200)]  # one face's box, given: the tests do not depend on the detector


def noisy_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """The astronaut with different noise in each frame, so each frame's answer differs."""
    frame = cv2.imread(str(SAMPLES / "astronaut.png"))
    rng = np.random.default_rng(seed)
    return [np.clip(frame + rng.integers(-60, 60, frame.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def probabilities(faces: list) -> np.ndarray:
    return np.array(list(faces[0].probabilities.values()))


def test_the_default_time_constant_is_the_former_per_frame_weight_at_30_fps() -> None:
    assert time_weight(FRAME_INTERVAL_S, SMOOTHING_S) == pytest.approx(EMA_WEIGHT)
    assert SMOOTHING_S == pytest.approx(-FRAME_INTERVAL_S / math.log(1 - EMA_WEIGHT)) and 0.04 < SMOOTHING_S < 0.05
    assert time_weight(0.5, 0.0) == 1.0 and time_weight(None, SMOOTHING_S) == 1.0
    assert HOLD_S == pytest.approx(0.1)


def test_smoothing_depends_on_time_not_on_the_frame_count(tiny_ensemble: Path) -> None:
    """A 15 fps stream and a 30 fps stream that shows each picture twice (each answer standing for
    the time since the one before) give the same answers at the same times: a picture weighs by how
    long it was shown, not by how many frames showed it, as the former per-frame weight did."""
    recognizer = EmotionRecognizer(tiny_ensemble)
    frames = noisy_frames(5)
    at_15, at_30 = recognizer.stream(), recognizer.stream()
    for i, frame in enumerate(frames):
        fifteen = at_15.update(frame, i / 15, boxes=BOX)
        if i:
            at_30.update(frame, (2 * i - 1) / 30, boxes=BOX)
        thirty = at_30.update(frame, 2 * i / 30, boxes=BOX)
        np.testing.assert_allclose(probabilities(thirty), probabilities(fifteen), rtol=1e-5, atol=1e-7)
        assert fifteen[0].track_id == thirty[0].track_id == 1
    raw = [recognizer.classify(frame, BOX)[0] for frame in frames[:2]]  # the arithmetic, once by hand
    stream = recognizer.stream()
    stream.update(frames[0], 0.0, boxes=BOX)
    w15 = 1 - math.exp(-(1 / 15) / SMOOTHING_S)  # 0.75: two frames' worth of the former 0.5
    np.testing.assert_allclose(probabilities(stream.update(frames[1], 1 / 15, boxes=BOX)),
                               w15 * raw[1] + (1 - w15) * raw[0], rtol=1e-5)


def test_a_frame_without_a_timestamp_comes_one_frame_interval_after_the_last(tiny_ensemble: Path) -> None:
    stream = EmotionRecognizer(tiny_ensemble).stream(frame_interval_s=0.1)
    frame = noisy_frames(1)[0]
    stream.update(frame, boxes=BOX)
    assert stream.time_s == 0.0
    stream.update(frame, 5.0, boxes=BOX)
    stream.update(frame, boxes=BOX)
    assert stream.time_s == pytest.approx(5.1)


def test_timestamps_must_increase(tiny_ensemble: Path) -> None:
    stream = EmotionRecognizer(tiny_ensemble).stream()
    frame = noisy_frames(1)[0]
    stream.update(frame, 1.0, boxes=BOX)
    for wrong in (1.0, 0.5):
        with pytest.raises(ValueError, match="timestamps must increase"):
            stream.update(frame, wrong, boxes=BOX)
    with pytest.raises(ValueError, match="finite"):
        stream.update(frame, float("nan"), boxes=BOX)
    assert stream.time_s == 1.0 and stream.update(frame, 1.5, boxes=BOX)[0].track_id == 1  # the stream goes on
    with pytest.raises(ValueError, match="hold_s is a duration"):
        StreamOptions(hold_s=-1)


def test_the_hold_lasts_seconds_whatever_the_frame_rate(tiny_ensemble: Path) -> None:
    """HOLD_S (0.1 s): at 30 fps, 3 missed frames are held; at 15 fps, 1; at 60 fps, 6."""
    recognizer = EmotionRecognizer(tiny_ensemble)
    frame = noisy_frames(1)[0]
    for fps, held in ((30, 3), (15, 1), (60, 6)):
        stream = recognizer.stream()
        stream.update(frame, 0.0, boxes=BOX)
        shown = [bool(stream.update(frame, i / fps, boxes=[])) for i in range(1, 9)]
        assert shown == [True] * held + [False] * (8 - held), fps
    longer = recognizer.stream(hold_s=0.15)
    longer.update(frame, 0.0, boxes=BOX)
    assert [bool(longer.update(frame, i / 30, boxes=[])) for i in range(1, 7)] == [True] * 4 + [False] * 2


def test_two_streams_on_one_recognizer_keep_separate_tracks() -> None:
    recognizer = EmotionRecognizer()
    hopper = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))
    astronaut = cv2.imread(str(SAMPLES / "astronaut.png"))
    one, two = recognizer.stream(), recognizer.stream(auto_resting_face=True)
    assert one.reader is two.reader is recognizer and one.tracker is not two.tracker
    first, second = one.update(hopper, 0.0), two.update(astronaut, 10.0)
    assert first[0].track_id == second[0].track_id == 1 and first[0].box != second[0].box
    assert one.take_resting_face() == [1]
    assert one.update(hopper, 0.1)[0].relative and not two.update(astronaut, 10.1)[0].relative
    assert [t.box for t in one.tracker.tracks] == [first[0].box]
    assert not one.options.auto_resting_face and two.options.auto_resting_face
    assert not recognizer.auto_resting_face  # a stream's settings are its own


def test_predict_keeps_no_state_and_answers_from_many_threads_as_from_one() -> None:
    recognizer = EmotionRecognizer()
    images = [cv2.imread(str(SAMPLES / name)) for name in ("grace_hopper.jpg", "astronaut.png")]
    jobs = [(image, strength) for image in images for strength in (0.0, 0.5, 1.0)] * 3
    before = dict(vars(recognizer))
    alone = [recognizer.predict(image, prior_strength=strength) for image, strength in jobs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda job: recognizer.predict(job[0], prior_strength=job[1]), jobs))
    assert vars(recognizer) == before
    for one, other in zip(alone, together):
        assert [f.box for f in one] == [f.box for f in other] and [f.label for f in one] == [f.label for f in other]
        np.testing.assert_allclose([list(f.probabilities.values()) for f in one],
                                   [list(f.probabilities.values()) for f in other], rtol=1e-5, atol=1e-7)
    assert alone[0][0].probabilities != alone[2][0].probabilities  # the prior asked for is the one answered


def test_the_deprecated_names_warn_and_still_work() -> None:
    """Each former name warns, naming what replaces it, and does what it did (one release)."""
    recognizer = EmotionRecognizer()
    frame = cv2.imread(str(SAMPLES / "grace_hopper.jpg"))

    def old(name: str):
        assert name in DEPRECATED
        return pytest.warns(FerDeprecationWarning, match=f"{name.split('(')[0]}.* is deprecated: use "
                                                          f"{DEPRECATED[name][0]}")

    with old("EmotionRecognizer.track"):
        (face,) = recognizer.track(frame)
    assert face.track_id == 1
    with old("EmotionRecognizer.take_resting_face"):
        assert recognizer.take_resting_face() == [1]
    with old("EmotionRecognizer.track"):
        assert recognizer.track(frame)[0].relative
    with old("EmotionRecognizer.set_resting_face"):
        recognizer.set_resting_face(1, None)
    with old("EmotionRecognizer.set_auto_resting_face"):
        assert recognizer.set_auto_resting_face(True) == [1]
    with old("EmotionRecognizer.clear_resting_face"):
        assert recognizer.clear_resting_face() == []
    with old("EmotionRecognizer.set_profile"), pytest.raises(KeyError):
        recognizer.set_profile(7, None)
    with old("EmotionRecognizer.tracker"):
        assert [t.track_id for t in recognizer.tracker.tracks] == [1]
    with old("EmotionRecognizer.hold"):
        assert recognizer.hold == 3
    with old("EmotionRecognizer.stream(frames)"):
        frames = recognizer.stream([frame, frame])
    assert [faces[0].track_id for _, faces in frames] == [1, 1]  # as before: tracks from 1 again
    for name, frames_at_30 in (("HOLD_FRAMES", 3), ("CALM_FRAMES", 5)):
        with old(name):
            from fer_ensemble.runtime import recognizer as module

            assert getattr(module, name) == frames_at_30
    assert issubclass(FerDeprecationWarning, DeprecationWarning)


def test_a_calibration_gives_a_new_ensemble_and_leaves_the_shared_one_alone(tiny_ensemble: Path) -> None:
    shared = Ensemble.load(tiny_ensemble)
    plain = EmotionRecognizer(shared)
    posed = EmotionRecognizer(shared, calibration="posed")
    assert shared.calibration is None and plain.ensemble is shared
    assert posed.ensemble is not shared and posed.ensemble.calibration is not None
    assert posed.ensemble.members is shared.members  # the ONNX sessions are shared, not loaded again
    crops = [np.full((40, 40), 90, np.uint8), np.arange(1600, dtype=np.uint8).reshape(40, 40)]
    assert not np.allclose(posed.ensemble.predict_proba(crops), shared.predict_proba(crops))
    np.testing.assert_array_equal(EmotionRecognizer(shared).ensemble.predict_proba(crops), shared.predict_proba(crops))


def test_a_stream_is_a_face_stream_with_the_recognizers_defaults(tiny_ensemble: Path) -> None:
    recognizer = EmotionRecognizer(tiny_ensemble, ema_weight=1.0, auto_resting_face=True)
    stream = recognizer.stream(hold_s=0.0)
    assert isinstance(stream, FaceStream) and stream.options.smoothing_s == 0.0
    assert stream.options.auto_resting_face and stream.options.hold_s == 0.0
    assert stream.prior_strength == recognizer.prior_strength
    with pytest.raises(TypeError):
        recognizer.stream(smoothing=0.3)


def test_a_stream_reads_new_tracks_through_its_profile_and_one_track_can_change_it() -> None:
    """Personal profiles in a stream: ``options.profile`` for every new track (the recognizer's own by
    default), ``set_profile`` for one track; another stream on the same recognizer is not touched."""
    recognizer = EmotionRecognizer()
    image = cv2.imread(str(SAMPLES / "astronaut.png"))
    profile = recognizer.enrol([image, cv2.flip(image, 1)], ["happiness", "neutral"])
    mine, plain = recognizer.stream(profile=profile), recognizer.stream()
    assert mine.update(image)[0].profiled and not plain.update(image)[0].profiled
    mine.set_profile(1, None)
    assert not mine.update(image)[0].profiled
    plain.set_profile(1, profile)
    assert plain.update(image)[0].profiled
    assert EmotionRecognizer(recognizer.ensemble, profile=profile).stream().update(image)[0].profiled
    with pytest.raises(KeyError):
        mine.set_profile(9, profile)


def test_a_container_timestamp_that_repeats_does_not_stop_a_video(tiny_ensemble: Path) -> None:
    from fer_ensemble.runtime.stream import later_time

    stream = EmotionRecognizer(tiny_ensemble).stream(frame_interval_s=0.04)
    frame = noisy_frames(1)[0]
    for stamp in (0.0, 0.04, 0.04, 0.02, 0.2):  # a damaged file's timestamps
        stream.update(frame, later_time(stamp, stream.time_s), boxes=BOX)
    assert stream.time_s == pytest.approx(0.2) and later_time(0.1, None) == 0.1


def stream_with_a_profiled_face():
    """A stream whose one face (the astronaut at ``BOX``, frame 0.0 s) was given a profile of its own:
    (stream, image, that face, the profile)."""
    recognizer = EmotionRecognizer()
    image = cv2.imread(str(SAMPLES / "astronaut.png"))
    profile = recognizer.enrol([image, cv2.flip(image, 1)], ["happiness", "neutral"])
    stream = recognizer.stream()
    [face] = stream.update(image, 0.0, boxes=BOX)
    stream.set_profile(face.track_id, profile)
    return stream, image, face, profile


def test_a_profile_given_to_one_face_follows_it_through_a_short_loss_of_its_track() -> None:
    """set_profile on track 1; the face is gone for 0.5 s (its track dies) and comes back a little
    moved: the new track takes the profile, a face appearing elsewhere does not; after FOLLOW_S a
    returning face is read plainly."""
    from fer_ensemble.runtime.stream import FOLLOW_S

    stream, image, face, profile = stream_with_a_profiled_face()
    assert stream.update(image, 0.1, boxes=BOX)[0].profiled
    stream.update(image, 0.6, boxes=[])  # gone: the track dies (keep_s 1/6 s)
    far = (10, 300, 150, 150)
    back = stream.update(image, 0.7, boxes=[(140, 50, 200, 200), far])
    assert [(f.track_id != face.track_id, f.profiled) for f in back] == [(True, True), (True, False)]
    stream.set_profile(back[0].track_id, profile)
    for step in range(int(FOLLOW_S / 0.1) + 3):  # the face away for longer than FOLLOW_S
        stream.update(image, 0.8 + 0.1 * step, boxes=[])
    late = stream.update(image, 0.8 + FOLLOW_S + 0.4, boxes=BOX)
    assert not late[0].profiled


def test_forgetting_lost_profiles_keeps_a_returning_face_plain() -> None:
    """After every face's profile is changed (the server's {"profile": null}), a face whose track
    was lost does not take its former profile back."""
    stream, image, _, _ = stream_with_a_profiled_face()
    stream.update(image, 0.1, boxes=BOX)
    stream.update(image, 0.5, boxes=[])
    stream.forget_lost_profiles()
    assert not stream.update(image, 0.6, boxes=BOX)[0].profiled
