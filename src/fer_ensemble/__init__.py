"""Real-time facial expression recognition with a ResNet50 + MobileNetV2 ensemble trained on FER+."""

from fer_ensemble.constants import EMOTIONS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "EmotionRecognizer", "Face", "__version__"]


def __getattr__(name: str):
    """``from fer_ensemble import EmotionRecognizer`` without loading ONNX Runtime for other uses."""
    if name in ("EmotionRecognizer", "Face"):
        from fer_ensemble import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'fer_ensemble' has no attribute {name!r}")
