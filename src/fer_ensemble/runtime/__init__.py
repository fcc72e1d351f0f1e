"""Inference runtime: ONNX Runtime + OpenCV + NumPy. Never imports torch."""

from fer_ensemble.runtime.classifier import OnnxClassifier, softmax
from fer_ensemble.runtime.ensemble import Ensemble
from fer_ensemble.runtime.recognizer import EmotionRecognizer, Face, load_ensemble
from fer_ensemble.runtime.stream import FaceStream, StreamOptions

__all__ = ["EmotionRecognizer", "Ensemble", "Face", "FaceStream", "OnnxClassifier", "StreamOptions", "load_ensemble",
           "softmax"]
