import cv2
from fer_ensemble import EmotionRecognizer

recognizer = EmotionRecognizer()
at_rest = recognizer.resting_face([cv2.imread("portrait-at-rest.jpg")])      # photos of one person at rest
faces = recognizer.predict(cv2.imread("portrait.jpg"), resting_face=at_rest)  # face.relative is True
print("photo:", [(face.label, face.relative) for face in faces])

capture = cv2.VideoCapture("clip.mp4")
stream = recognizer.stream()                                 # a video's FaceStream (see above)
ok, frame = capture.read()
faces = stream.update(frame, capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
taken = stream.take_resting_face()                           # in a stream: every face in view, by track id
stream.set_resting_face(faces[0].track_id, at_rest)          # or one track
cleared = stream.clear_resting_face()
print("video: took", taken, "cleared", cleared)
