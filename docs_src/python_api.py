import cv2
from fer_ensemble import EmotionRecognizer

recognizer = EmotionRecognizer()              # the shipped ensemble; or EmotionRecognizer("my/ensemble.json")
# recognizer = EmotionRecognizer(prior_strength="ferplus")   # FER+'s class prior instead of the default (0.95)
# recognizer = EmotionRecognizer(calibration="posed")  # or the ensemble.json that `fer-ensemble adapt` wrote
image = cv2.imread("group.jpg")
faces = recognizer.predict(image)             # every face: Face(box, label, score, probabilities, track_id)
for face in faces:
    print(face.box, face.label, round(face.score, 2), face.probabilities["happiness"])
cv2.imwrite("annotated.jpg", recognizer.annotate(image, faces))

from fer_ensemble.runtime.blazeface import BlazeFaceOptions
from fer_ensemble.runtime.detection import HaarOptions
from fer_ensemble.runtime.detectors import create_detector

haar = EmotionRecognizer(detector=create_detector(HaarOptions.stills()))  # --detector haar instead of BlazeFace
print("haar:", [face.label for face in haar.predict(image)])
video = EmotionRecognizer(detector=create_detector(BlazeFaceOptions.live()))  # the webcam's one-look preset
capture = cv2.VideoCapture("clip.mp4")        # video: stable track ids, answers smoothed over time
stream = video.stream()                       # one per video: its tracks, smoothing, hold, resting faces
ok, frame = capture.read()
while ok:
    time_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000  # the frame's own time, in seconds
    faces = stream.update(frame, time_s)      # stream.take_resting_face() would make each face its own reference
    print(f"{time_s:.2f} s", [(face.track_id, face.label) for face in faces])
    ok, frame = capture.read()

portrait = cv2.imread("portrait.jpg")         # one person; and photos of that person at rest:
at_rest = recognizer.resting_face([cv2.imread("portrait-at-rest.jpg")])  # the largest face of each
faces = recognizer.predict(portrait, resting_face=at_rest)  # read relative to it: face.relative is True
print("relative to the resting face:", [(face.label, face.relative) for face in faces])
