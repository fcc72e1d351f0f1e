"""Real-time facial expression recognition with a ResNet50 + MobileNetV2 ensemble trained on FER+."""

from fer_ensemble.constants import EMOTIONS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "__version__"]
