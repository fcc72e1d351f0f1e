"""Reading and writing user media without tracebacks: every problem becomes one clear line. Shared
by the apps, batch and evaluation: ``inputs`` (what the user named), ``kinds`` (what a file is),
``images``, ``video`` and ``decoder`` (FFmpeg's log)."""
