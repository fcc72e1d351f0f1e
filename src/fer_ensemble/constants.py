"""Names shared by every part of the package (torch-free)."""

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
"""The eight FER+ emotions, in the order of the dataset's vote columns and of every model output."""

VOTE_COLUMNS: tuple[str, ...] = EMOTIONS + ("unknown", "NF")
"""The ten FER+ vote columns: the eight emotions, then 'unknown' and 'not a face'."""

CONTEMPT_INDEX = EMOTIONS.index("contempt")
"""The index of contempt in ``EMOTIONS`` (the class CK+48's seven-class view leaves out)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet's per-channel mean (RGB, for [0, 1] pixels): the members' input normalisation, torchvision's."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet's per-channel standard deviation (RGB, for [0, 1] pixels), as ``IMAGENET_MEAN``."""

MODEL_NAMES: tuple[str, ...] = ("mobilenet_v2", "resnet50")
"""The ensemble's members, as ``create_model`` names them."""

BLENDSHAPES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight")
"""The 51 blendshapes a face's geometry gives (MediaPipe's, ARKit's names, in the model's order; its
``_neutral`` baseline left out): ``Face.blendshapes``' keys and the geometry columns of every table.
"Left" and "Right" are the person's own: the person's left is on the image's right."""
