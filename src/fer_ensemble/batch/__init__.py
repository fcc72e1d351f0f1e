"""Batch analysis of photo and video collections: one Parquet row per face per frame.

``plan`` turns inputs (files, folders, globs, manifests, URIs) into tasks (a photo, a whole video
when tracking, or a range of a video's frames); ``work`` runs one task with a recognizer; ``output``
writes and reads the Parquet files; ``engines`` runs the tasks on a local process pool or on Ray
Data, with the same ``work`` code, so both give the same rows.
"""
