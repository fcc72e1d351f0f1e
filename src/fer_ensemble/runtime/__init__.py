"""Inference runtime: ONNX Runtime + OpenCV + NumPy. Never imports torch."""

from fer_ensemble.runtime.classifier import OnnxClassifier, softmax

__all__ = ["OnnxClassifier", "softmax"]
