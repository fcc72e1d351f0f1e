import cv2
from fer_ensemble import EmotionRecognizer
from fer_ensemble.runtime.blazeface import BlazeFaceOptions
from fer_ensemble.runtime.detection import HaarOptions
from fer_ensemble.runtime.detectors import create_detector

recognizers = {  # by the command that uses the same detector
    "predict": EmotionRecognizer(),                                                  # BlazeFace, photo preset
    "webcam": EmotionRecognizer(detector=create_detector(BlazeFaceOptions.live())),  # its one-look preset
    "predict --detector haar": EmotionRecognizer(detector=create_detector(HaarOptions.stills())),
    "webcam --detector haar --min-face 60":
        EmotionRecognizer(detector=create_detector(HaarOptions.live(min_face=60))),
}
image = cv2.imread("group.jpg")
for command, recognizer in recognizers.items():
    print(f"{command}:", [face.label for face in recognizer.predict(image)])
