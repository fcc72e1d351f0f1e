"""Issue 24, items 4, 10 and 15 in the runtime layer: typed detector and ensemble specs that say in
one line what is wrong, the renamed keywords (old names still work, with a DeprecationWarning), the
error for outputs, and a docstring on every public name."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from fer_ensemble.errors import ExitCode, InputError, OutputError, SpecError, UserError
from fer_ensemble.runtime.blazeface import BlazeFaceDetector, BlazeFaceOptions
from fer_ensemble.runtime.detection import HaarFaceDetector, HaarOptions
from fer_ensemble.runtime.detectors import (
    SecondLook,
    create_detector,
    detector_options,
    live_settings,
)
from fer_ensemble.runtime.ensemble import ENSEMBLE_FORMAT, WEIGHTS_DIR, EnsembleSpec, MemberSpec

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fer_ensemble"


# --- detector options ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [240, 500, HaarOptions.stills().detect_width])
def test_another_detectors_setting_is_refused_whatever_its_value(value: int) -> None:
    """``--detector blazeface --detect-width 240`` was accepted (the live preset's own value) while
    500 was refused: the key decides, not the value."""
    with pytest.raises(SpecError, match=r"^detect_width is a setting of the haar detector, not of blazeface$"):
        create_detector({"detector": "blazeface", "detect_width": value})
    with pytest.raises(SpecError, match="score_threshold is a setting of the blazeface detector, not of haar"):
        HaarOptions.from_dict({"score_threshold": 0.7})


@pytest.mark.parametrize(("settings", "message"), [
    ({"detector": "yolo"}, "unknown detector 'yolo'; known: haar, blazeface"),
    ({"detector": "blazeface", "min_fcae": 30}, "unknown blazeface setting 'min_fcae'"),
    ({"detector": "blazeface", "min_face": "40"}, "blazeface setting min_face must be a number, not '40'"),
    ({"detector": "blazeface", "min_face": True}, "blazeface setting min_face must be a number"),
    ({"detector": "blazeface", "min_face": 40.5}, "must be a whole number of pixels"),
    ({"detector": "blazeface", "score_threshold": 1.0}, r"score_threshold must lie in \(0, 1\), not 1.0"),
    ({"detector": "haar", "scale_factor": 1.0}, r"scale_factor must lie in \(1, inf\)"),
    ({"detector": "haar", "equalize": "gamma"}, "equalize must be one of none, global, clahe"),
    ({"detector": "haar", "rotations": 25}, "rotations must be a list of numbers"),
    ({"detector": "haar", "second_look": 1.0}, r"second_look must lie in \[0, 1\)"),
])
def test_a_bad_detector_setting_is_one_line_naming_it(settings: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        create_detector(settings)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, UserError) and caught.value.exit_code == ExitCode.USAGE


def test_options_build_the_detectors_the_dicts_did() -> None:
    assert detector_options() == BlazeFaceOptions() and detector_options({"detector": "haar"}) == HaarOptions()
    haar = HaarOptions.from_dict({"detector": "haar", "min_face": 30.0, "rotations": [-25, 25], "second_look": 0})
    assert haar.min_face == 30 and isinstance(haar.min_face, int) and haar.rotations == (-25.0, 25.0)
    detector = create_detector(haar)
    assert isinstance(detector, HaarFaceDetector) and detector.options is haar
    assert isinstance(create_detector({"detector": "haar"}), SecondLook)
    blaze = create_detector(BlazeFaceOptions(min_face=30, score_threshold=0.6))
    assert isinstance(blaze, BlazeFaceDetector) and blaze.options == BlazeFaceOptions(min_face=30, score_threshold=0.6)
    for options in (haar, BlazeFaceOptions(score_threshold=0.6), HaarOptions.live()):
        assert detector_options(options.to_dict()) == options == detector_options(options.to_dict(defaults=False))
    with pytest.raises(SpecError, match="reads the settings of haar, not of the detector 'blazeface'"):
        HaarOptions.from_dict({"detector": "blazeface"})


def test_a_detector_takes_its_options_and_settings_that_replace_some() -> None:
    """``HaarFaceDetector(options, **settings)`` as MediaPipe's tasks take one options object: the
    settings replace the options' (or the stills preset's) and are checked as the options are."""
    assert HaarFaceDetector().options == HaarOptions.stills()
    assert HaarFaceDetector(HaarOptions.live(), min_face=100).options == HaarOptions.live(min_face=100)
    assert BlazeFaceDetector(turned_scans="off").options == BlazeFaceOptions(turned_scans="off")
    with pytest.raises(SpecError, match="blazeface setting turned_scans must be one of off, fallback, always"):
        BlazeFaceDetector(turned_scans="sometimes")
    with pytest.raises(SpecError, match=r"haar setting min_face must lie in \[1, inf\)"):
        HaarFaceDetector(min_face=0)
    with pytest.raises(TypeError):
        BlazeFaceDetector(detect_width=240)  # not a BlazeFace setting


def test_the_live_preset_keeps_the_chosen_detector_and_its_own_settings() -> None:
    live = detector_options(live_settings({"detector": "haar", "second_look": 0, "equalize": "clahe"}))
    assert live == HaarOptions.live(second_look=0.0, equalize="clahe")
    assert (live.detect_width, live.min_face, live.coarse_side) == (240, 80, 0)
    blaze = detector_options(live_settings({"detector": "blazeface", "score_threshold": 0.6}))
    assert blaze == BlazeFaceOptions(min_face=80, score_threshold=0.6, relative_min_face=0.0, turned_scans="off")
    assert live_settings() == {"detector": "blazeface", "min_face": 80, "relative_min_face": 0.0, "turned_scans": "off"}


# --- the ensemble file ------------------------------------------------------------------------

def shipped() -> dict:
    return json.loads((WEIGHTS_DIR / "ensemble.json").read_text())


def test_the_shipped_ensemble_file_reads_as_a_spec_and_back() -> None:
    spec = EnsembleSpec.read(WEIGHTS_DIR / "ensemble.json")
    assert spec.format == ENSEMBLE_FORMAT and [m.card for m in spec.members] == ["resnet50.json", "mobilenet_v2.json"]
    assert spec.class_prior is not None and len(spec.class_prior) == 8 and 0 < spec.prior_strength <= 1
    assert {"fitted_on", "latency", "metrics"} <= set(spec.info)
    assert spec.member_flip_tta(spec.members[1]) is True and spec.cards_folder("x/e.json") == Path("x")
    assert _same(EnsembleSpec.from_dict(spec.to_dict(), "again"), spec)
    assert spec.to_dict() == shipped()  # the file is what the one writer (fit-ensemble's spec.to_dict) wrote


def _same(a: EnsembleSpec, b: EnsembleSpec) -> bool:
    """Equal but for the arrays (a dataclass compares arrays with ==, which is ambiguous)."""
    fields = ("members", "classes", "class_prior", "prior_strength", "flip_tta", "weights", "resting_measured_on", "info")
    return ([getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
            and np.allclose(a.resting_spread, b.resting_spread))


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "fer-ensemble/ensemble/v9"}, "an ensemble file of format 'fer-ensemble/ensemble/v9', which this "
                                              "version of fer-ensemble does not read"),
    ({"members": []}, "an ensemble needs at least one member"),
    ({"members": {"card": "a.json"}}, "'members' must list objects with a 'card'"),
    ({"members": [{"card": "a.json", "temprature": 1.2}]}, r"members\[0\] has unknown key\(s\) 'temprature'"),
    ({"members": [{"variant": "int8"}]}, r"members\[0\] needs a 'card'"),
    ({"members": [{"card": "a.json", "temperature": 0}]}, r"members\[0\].temperature must lie in \(0, inf\)"),
    ({"members": [{"card": "a.json", "weight": "heavy"}]}, r"members\[0\].weight must be a number"),
    ({"prior": {"strength": 1.5}}, r"prior.strength must lie in \[0, 1\], not 1.5"),
    ({"prior": {"class_prior": [0.5, 0.5]}}, "prior.class_prior must list 8 class frequencies"),
    ({"prior": {"stregth": 1}}, "prior has unknown key"),
    ({"weights": "mine"}, "weights must be \"shipped\""),
    ({"flip_tta": "yes"}, "flip_tta must be true or false"),
    ({"resting_face": {"spread": [1, 2]}}, "a damaged resting_face entry"),
])
def test_a_damaged_ensemble_file_is_one_line_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        EnsembleSpec.from_dict({**shipped(), **change}, "e.json")
    assert str(caught.value).startswith("e.json: ") and "\n" not in str(caught.value)


def test_an_ensemble_file_of_another_format_is_refused_from_disk_and_by_the_cli(tmp_path: Path) -> None:
    from fer_ensemble.runtime.ensemble import check_ensemble_file

    path = tmp_path / "future.json"
    path.write_text(json.dumps({**shipped(), "format": "fer-ensemble/ensemble/v9", "weights": "shipped"}))
    for read in (EnsembleSpec.read, check_ensemble_file):
        with pytest.raises(UserError, match="does not read"):
            read(path)


def test_an_ensemble_is_its_members_and_a_spec_whose_classes_must_be_the_cards(tiny_ensemble: Path) -> None:
    """``Ensemble(members, spec)``: the file's ``classes`` are compared with the cards' (they were
    read and never checked); a plain dict still works for one release, with a warning."""
    from fer_ensemble.errors import FerDeprecationWarning
    from fer_ensemble.runtime.ensemble import Ensemble

    ensemble = Ensemble.load(tiny_ensemble)
    spec = EnsembleSpec.read(tiny_ensemble)
    assert Ensemble(ensemble.members, spec).spec is spec and ensemble.config == spec.to_dict()
    swapped = tuple(reversed(ensemble.classes))
    with pytest.raises(SpecError, match=rf"classes {', '.join(swapped)} are not its members' cards'"):
        Ensemble(ensemble.members, EnsembleSpec(members=spec.members, classes=swapped))
    (tiny_ensemble.parent / "swapped.json").write_text(json.dumps({**spec.to_dict(), "classes": list(swapped)}))
    with pytest.raises(SpecError, match="are not its members' cards'"):
        Ensemble.load(tiny_ensemble.parent / "swapped.json")
    with pytest.warns(FerDeprecationWarning, match=r"Ensemble\(members, config\) is deprecated"):
        assert Ensemble(ensemble.members, {"prior": {"strength": 0.5}}).default_prior_strength == 0.5


def test_member_spec_round_trip() -> None:
    member = MemberSpec("a.json", "int8", 0.6, 0.4, True)
    assert MemberSpec.from_dict(member.to_dict()) == member
    assert MemberSpec.from_dict({"card": "a.json"}).to_dict() == {"card": "a.json", "temperature": 1.0, "weight": 1.0}


# --- renamed keywords -------------------------------------------------------------------------

def test_ema_weight_and_prior_strength_take_over_from_smoothing_and_prior(tiny_ensemble: Path) -> None:
    from fer_ensemble.runtime.ensemble import Ensemble
    from fer_ensemble.runtime.recognizer import EmotionRecognizer
    from fer_ensemble.runtime.tracking import smooth

    recognizer = EmotionRecognizer(tiny_ensemble, ema_weight=0.3, prior_strength=0.0)
    assert (recognizer.ema_weight, recognizer.prior_strength) == (0.3, 0.0)
    with pytest.warns(DeprecationWarning, match="smoothing= is deprecated: use ema_weight="):
        old = EmotionRecognizer(tiny_ensemble, smoothing=0.25)
    assert old.ema_weight == 0.25
    with pytest.warns(DeprecationWarning, match="use ema_weight"):
        old.smoothing = 1.0
    assert old.ema_weight == 1.0
    with pytest.warns(DeprecationWarning, match="prior= is deprecated"):
        assert EmotionRecognizer(tiny_ensemble, prior="ferplus").prior_strength == 0.0
    with pytest.warns(DeprecationWarning, match="use prior_strength"):
        old.prior = "ferplus"  # the former attribute still sets the answers' prior, checked as before
    assert old.prior_strength == 0.0
    with pytest.warns(DeprecationWarning), pytest.raises(UserError):
        old.prior = 2.0
    for both in ({"smoothing": 0.25, "ema_weight": 0.3}, {"prior": 0.0, "prior_strength": 1.0}):
        with pytest.raises(TypeError, match="not both"):
            EmotionRecognizer(tiny_ensemble, **both)
    with pytest.raises(UserError, match=r"ema_weight \(smoothing\) is the newest frame's weight"):
        EmotionRecognizer(tiny_ensemble, ema_weight=0.0)
    np.testing.assert_allclose(smooth(np.array([1.0, 0.0]), np.array([0.0, 1.0]), ema_weight=0.25), [0.75, 0.25])

    ensemble = Ensemble.load(tiny_ensemble)
    faces = [np.full((30, 30), 90, np.uint8), np.arange(900, dtype=np.uint8).reshape(30, 30)]
    new = ensemble.predict_proba(faces, prior_strength=0.0)
    with pytest.warns(DeprecationWarning, match="prior= is deprecated: use prior_strength="):
        np.testing.assert_array_equal(ensemble.predict_proba(faces, prior=0.0), new)
    assert new.shape == (2, 8) and new.dtype == np.float32


# --- errors -----------------------------------------------------------------------------------

def test_an_output_error_is_not_an_input_error_but_keeps_the_documented_code() -> None:
    error = OutputError("out.png: cannot write (no permission)")
    assert not isinstance(error, InputError) and isinstance(error, UserError)
    assert error.exit_code == ExitCode.OUTPUT_FAILED == ExitCode.INPUT_FAILED == 1  # docs/command-line.md
    assert SpecError("x").exit_code == ExitCode.USAGE == 2


# --- docstrings -------------------------------------------------------------------------------

LIBRARY_FILES = sorted(path for path in PACKAGE.rglob("*.py")
                       if path.relative_to(PACKAGE).parts[0] not in ("apps", "server", "cli.py"))
"""Every module of the API reference: all but the commands and the web app (documented by their
command-line and endpoint pages)."""


def undocumented(path: Path) -> list[str]:
    """The public functions, classes and methods of ``path`` without a docstring, and its public
    constants without one (a string right after the assignment)."""
    missing = []
    body = ast.parse(path.read_text()).body

    def walk(nodes: list[ast.stmt], prefix: str) -> None:
        for i, node in enumerate(nodes):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                setter = any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in
                             getattr(node, "decorator_list", []))
                if ast.get_docstring(node) is None and not setter:
                    missing.append(prefix + node.name)
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")
            elif not prefix and isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("_")
                         and t.id != "__all__"]
                following = nodes[i + 1] if i + 1 < len(nodes) else None
                documented = (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                              and isinstance(following.value.value, str))
                missing.extend(name for name in names if not documented)

    walk(body, "")
    return missing


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_public_name_has_a_docstring(path: Path) -> None:
    assert undocumented(path) == []


def test_the_former_detector_specs_and_preset_dicts_work_one_release_with_a_warning() -> None:
    """``HaarSpec``, ``BlazeFaceSpec``, ``detector_spec`` and the preset dicts became the options
    dataclasses (issue 34, item 2); the old names answer through the deprecation table."""
    from fer_ensemble.errors import FerDeprecationWarning
    from fer_ensemble.runtime import blazeface, detection, detectors

    with pytest.warns(FerDeprecationWarning, match=r"^HaarSpec is deprecated: use HaarOptions"):
        assert detectors.HaarSpec is HaarOptions
    with pytest.warns(FerDeprecationWarning, match="BlazeFaceSpec is deprecated"):
        from fer_ensemble.runtime.detectors import BlazeFaceSpec  # type: ignore[attr-defined]
    assert BlazeFaceSpec is BlazeFaceOptions
    with pytest.warns(FerDeprecationWarning, match="detector_spec is deprecated: use detector_options"):
        assert detectors.detector_spec({"detector": "haar"}) == HaarOptions()
    with pytest.warns(FerDeprecationWarning, match=r"STILL_DETECTION is deprecated: use HaarOptions.stills\(\)"):
        assert detection.STILL_DETECTION == {"detect_width": 0, "min_face": 40, "scale_factor": 1.2, "min_neighbors": 5,
                                             "coarse_side": 200, "relative_min_face": 0.4, "equalize": "none"}
    with pytest.warns(FerDeprecationWarning, match="LIVE_DETECTION is deprecated"):
        assert detection.LIVE_DETECTION["detect_width"] == 240
    with pytest.warns(FerDeprecationWarning, match="BLAZEFACE_DETECTION is deprecated"):
        assert blazeface.BLAZEFACE_DETECTION == {"min_face": 40, "score_threshold": 0.7, "relative_min_face": 0.4,
                                                 "turned_scans": "fallback"}
    with pytest.warns(FerDeprecationWarning, match=r"HaarFaceDetector.for_live is deprecated.*HaarOptions.live\(\)"):
        assert HaarFaceDetector.for_live().options == HaarOptions.live()
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        detectors.NoSuchName  # noqa: B018


def test_a_detectors_settings_are_its_options_read_with_a_warning_and_never_set_on_it() -> None:
    """``detector.min_face`` (the former attributes) warns and reads the options; ``detector.min_face
    = 20`` would have been silently ignored, so it is refused."""
    from fer_ensemble.errors import FerDeprecationWarning

    for detector in (HaarFaceDetector(min_face=60), BlazeFaceDetector(min_face=60)):
        with pytest.warns(FerDeprecationWarning, match="detector settings as attributes is deprecated"):
            assert detector.min_face == 60  # type: ignore[attr-defined]
        with pytest.raises(AttributeError, match="min_face is one of the detector's options"):
            detector.min_face = 20  # type: ignore[attr-defined]
        assert detector.options.min_face == 60
        with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
            detector.nonsense  # type: ignore[attr-defined]  # noqa: B018
