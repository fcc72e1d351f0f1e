"""What recognition returns for one face: plain data, shared by the recognizer, drawing and the apps."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from fer_ensemble.runtime.detection import Box


@dataclass
class Face:
    """One detected face: box [x, y, w, h] in image pixels (ints; a face cut by the photo's edge
    gets a box that reaches past it, e.g. a negative ``y``: the crop repeats the edge pixels), the
    winning emotion and its ``score``, and all of them (``probabilities``: emotion -> probability,
    summing to one); ``track_id`` in a stream (None for stills); ``relative`` when read relative
    to the person's resting face; ``held`` when the detector missed this tracked face in this frame
    and its last box and answer are shown (``StreamOptions.hold_s``); ``profiled`` when read
    through the person's profile (``fer_ensemble.runtime.profile``). With geometry asked for
    (``EmotionRecognizer(geometry=True)``; ``fer_ensemble.runtime.geometry``): ``landmarks`` (478, 3)
    float32 in image pixels, ``pose`` (yaw, pitch, roll) in degrees and ``blendshapes`` (51 named
    scores in [0, 1]); None otherwise, or when the landmarks model finds no face in the crop; and
    ``turned`` when that pose is past the measured readable range (``geometry.YAW_LIMIT``,
    ``PITCH_LIMIT``): its label is not to be trusted, and drawings say "turned" instead of it."""

    box: Box
    label: str
    score: float
    probabilities: dict[str, float]
    track_id: int | None = None
    relative: bool = False
    held: bool = False
    profiled: bool = False
    landmarks: np.ndarray | None = field(default=None, compare=False)  # an array: == would raise
    pose: tuple[float, float, float] | None = None
    blendshapes: dict[str, float] | None = None
    turned: bool = False

    @classmethod
    def from_probabilities(cls, box: Box, probabilities: np.ndarray, classes: tuple[str, ...], **flags) -> Face:
        """The face at ``box`` (ints taken) whose (C,) ``probabilities`` follow ``classes``: the
        most probable class is its ``label``; ``flags`` set ``track_id``, ``relative``, ``held``
        and ``profiled``."""
        best = int(np.argmax(probabilities))
        x, y, w, h = box
        return cls(box=(int(x), int(y), int(w), int(h)), label=classes[best], score=float(probabilities[best]),
                   probabilities={name: float(p) for name, p in zip(classes, probabilities)}, **flags)

    def to_dict(self) -> dict:
        """The JSON form (``predict --json``, the server): the fields by name, ``box`` as a list
        ``[x, y, w, h]`` of ints in image pixels; with geometry, ``pose`` as ``{"yaw", "pitch",
        "roll"}`` (0.1 degree), ``turned``, ``blendshapes`` (4 decimals) and ``landmarks`` as 478
        [x, y, z] (0.1 pixel); without, no such keys."""
        data = asdict(self)
        data["box"] = list(self.box)
        for key in ("landmarks", "pose", "blendshapes"):  # geometry: only when it was asked for
            if data[key] is None:
                del data[key]
        if self.pose is None:
            del data["turned"]
        if self.pose is not None:
            data["pose"] = dict(zip(("yaw", "pitch", "roll"), (round(float(v), 1) for v in self.pose)))
        if self.blendshapes is not None:
            data["blendshapes"] = {k: round(float(v), 4) for k, v in self.blendshapes.items()}
        if self.landmarks is not None:
            data["landmarks"] = np.round(np.asarray(self.landmarks, np.float64), 1).tolist()
        return data
