"""Command-line apps on the torch-free runtime: predict, video, webcam, demo, benchmark."""
