"""Every deprecated name of the API in one table, and the one helper that warns about them.

An old name keeps working for one release (0.1.x: removed in 0.2.0) and warns
``FerDeprecationWarning`` (a ``DeprecationWarning``) saying what replaces it. pytest turns that
warning into an error (pyproject.toml), so the project's own code and tests use none of them; a
test that checks an old name still works asks for the warning with ``pytest.warns``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from fer_ensemble.errors import FerDeprecationWarning

REMOVED_IN = "0.2.0"
"""The release that drops every name of ``DEPRECATED``."""

MOVED_TO_STREAM = ("set_resting_face", "take_resting_face", "clear_resting_face", "set_auto_resting_face", "set_profile")
"""``EmotionRecognizer`` methods of per-person state that ``FaceStream`` now has under the same name."""

DEPRECATED: dict[str, tuple[str, str]] = {
    # old name: (what replaces it, how to use it: "" when the new name is used just as the old)
    "smoothing=": ("ema_weight=", ""),
    "prior=": ("prior_strength=", ""),
    "EmotionRecognizer.smoothing": ("ema_weight", ""),
    "EmotionRecognizer.prior": ("prior_strength", ""),
    "EmotionRecognizer.track": ("FaceStream.update", "stream = recognizer.stream() once per video, then "
                                "stream.update(frame, timestamp_s) per frame"),
    "EmotionRecognizer.stream(frames)": ("FaceStream.update", "stream = recognizer.stream(), then "
                                         "stream.update(frame, timestamp_s) per frame"),
    "EmotionRecognizer.tracker": ("FaceStream.tracker", "each stream keeps its own tracks"),
    "EmotionRecognizer.hold": ("StreamOptions.hold_s", "in seconds: recognizer.stream(hold_s=0.1)"),
    **{f"EmotionRecognizer.{name}": (f"FaceStream.{name}", "") for name in MOVED_TO_STREAM},
    "HOLD_FRAMES": ("HOLD_S", "seconds, not frames (3 frames at 30 fps: 0.1 s)"),
    "CALM_FRAMES": ("CALM_S", "seconds, not frames (5 frames at 30 fps: 1/6 s)"),
    "HaarSpec": ("HaarOptions", "fer_ensemble.runtime.detection.HaarOptions: the options HaarFaceDetector takes"),
    "BlazeFaceSpec": ("BlazeFaceOptions", "fer_ensemble.runtime.blazeface.BlazeFaceOptions: the options "
                      "BlazeFaceDetector takes"),
    "DetectorSpec": ("DetectorOptions", ""),
    "DETECTOR_SPECS": ("DETECTOR_OPTIONS", ""),
    "detector_spec": ("detector_options", ""),
    "STILL_DETECTION": ("HaarOptions.stills()", "the stills preset as options"),
    "LIVE_DETECTION": ("HaarOptions.live()", "the live preset as options"),
    "BLAZEFACE_DETECTION": ("BlazeFaceOptions.stills()", "the stills preset as options"),
    "HaarFaceDetector.for_live": ("HaarOptions.live", "HaarFaceDetector(HaarOptions.live())"),
    "detector settings as attributes": ("detector.options", "e.g. detector.options.min_face"),
    "Ensemble(members, config)": ("Ensemble(members, spec)", "an EnsembleSpec: EnsembleSpec.from_dict(config)"),
}
"""Old name -> (the name that replaces it, how to use it). The single place an old name is kept."""


def warn_deprecated(old: str, stacklevel: int = 3) -> None:
    """Warn ``FerDeprecationWarning`` that ``old`` (a key of ``DEPRECATED``) is deprecated, naming
    what replaces it; ``stacklevel`` 3 points at the caller of the function that calls this one."""
    new, how = DEPRECATED[old]
    warnings.warn(f"{old} is deprecated: use {new}" + (f" ({how})" if how else "")
                  + f"; it will be removed in {REMOVED_IN}", FerDeprecationWarning, stacklevel=stacklevel)


def renamed_keyword(old_value, new_value, old: str, new: str, new_default=None):
    """``new_value``, or ``old_value`` with a deprecation warning when the caller still passed the
    keyword's old name ``old`` (not None); TypeError when both names were given (``new_value`` not
    its default ``new_default``). ``old=`` must be a key of ``DEPRECATED``."""
    if old_value is None:
        return new_value
    if new_value != new_default:
        raise TypeError(f"give {new}= or its former name {old}=, not both")
    warn_deprecated(f"{old}=", stacklevel=4)
    return old_value


def deprecated_attribute(module: str, name: str, old: dict[str, Callable[[], object]]) -> object:
    """A module's ``__getattr__``: the value of the deprecated name ``name`` (a key of ``old`` and of
    ``DEPRECATED``) with a deprecation warning; AttributeError, as Python says it, for any other name."""
    if name not in old:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warn_deprecated(name, stacklevel=4)  # the code that reads module.name
    return old[name]()
