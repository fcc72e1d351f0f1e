import cv2
from fer_ensemble import EmotionRecognizer

recognizer = EmotionRecognizer()                  # BlazeFace and the shipped ensemble, on the CPU
image = cv2.imread("group.jpg")
faces = recognizer.predict(image)                 # every face: Face(box, label, score, probabilities, track_id)
for face in faces:
    print(face.box, face.label, round(face.score, 2))
cv2.imwrite("annotated.jpg", recognizer.annotate(image, faces))
