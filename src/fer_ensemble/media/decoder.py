"""FFmpeg's own log, which OpenCV's video reader writes to the process's stdout: watched (a pipe on
fd 1 read by a thread), so that a damaged video's decoder errors are counted and never mixed into
the command's output, and drained before the command exits (``drain_stdout``)."""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import sys
import threading

WATCH_DECODER = "FER_ENSEMBLE_WATCH_DECODER"
"""Set (to 1) by ``watch_decoder_errors``; inherited by spawned workers, which then watch their own."""


FFMPEG_LINE = b"[OPENCV:FFMPEG:"
"""How OpenCV prefixes a message of FFmpeg's on stdout (with ``OPENCV_FFMPEG_DEBUG``)."""


DRAINED = b"\0fer-ensemble:stdout-drained\n"
"""The sentinel line ``DecoderLog.drain`` writes through the pipe and never passes on."""


@functools.cache
def _c_library() -> ctypes.CDLL | None:
    """The process's C library, opened once (it is flushed after every frame a watched video reads)."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def flush_c_streams() -> None:
    """Flush the C library's output buffers (OpenCV writes FFmpeg's messages with C's stdio, which
    holds them until its buffer fills when stdout is not a terminal)."""
    library = _c_library()
    if library is not None and hasattr(library, "fflush"):  # else the messages arrive when C flushes
        library.fflush(None)


class DecoderLog:
    """What FFmpeg's decoders report while videos are read. OpenCV prints FFmpeg's messages to
    the process's standard output with C's stdio (``[OPENCV:FFMPEG:16] ...``, from the decoder's
    own threads, so Python cannot catch them), and only when ``OPENCV_FFMPEG_DEBUG`` is set; this
    routes file descriptor 1 through a pipe, counts those lines (``errors``) and passes every other
    byte on unchanged. One per process."""

    def __init__(self) -> None:
        self.errors = 0
        self.closed = False  # the real stdout was closed by its reader (``_closed``)
        self.pid = os.getpid()
        sys.stdout.flush()
        flush_c_streams()
        self._stdout = os.dup(1)
        self._drained = threading.Event()
        self._drain_lock = threading.Lock()
        reader, writer = os.pipe()
        os.dup2(writer, 1)
        os.close(writer)
        self._thread = threading.Thread(target=self._pump, args=(reader,), daemon=True, name="decoder-log")
        self._thread.start()
        atexit.register(self.close)

    def _pump(self, reader: int) -> None:
        """Pass what arrives on ``reader`` on to the real stdout until the pipe ends; when the real
        stdout is closed (``| head -1`` exited), give it back to fd 1 and end (``_closed``)."""
        try:
            self._pass_on(reader)
        except OSError:  # BrokenPipeError, or a stdout otherwise gone
            self._closed()
        finally:
            os.close(reader)

    def _closed(self) -> None:
        """The real stdout was closed by its reader: fd 1 becomes it again, so the next write to stdout
        fails with BrokenPipeError where it is made (the command then ends quietly, exit 0) instead of
        filling a pipe that nobody reads any more (which blocked the writer for ever)."""
        self.closed = True
        os.dup2(self._stdout, 1)
        self._drained.set()

    def _pass_on(self, reader: int) -> None:
        pending = b""
        while chunk := os.read(reader, 65536):
            pending += chunk
            end = pending.rfind(b"\n")
            if end < 0 and len(pending) <= 65536:
                continue  # a line still arriving
            lines, pending = (pending[: end + 1], pending[end + 1 :]) if end >= 0 else (pending, b"")
            kept = []
            for line in lines.splitlines(keepends=True):
                if line.startswith(FFMPEG_LINE):
                    self.errors += 1
                elif DRAINED[:-1] in line:  # everything written before it has been passed on
                    kept.append(line.replace(DRAINED[:-1], b"").removesuffix(b"\n"))
                    os.write(self._stdout, b"".join(kept))
                    kept = []
                    self._drained.set()
                else:
                    kept.append(line)
            if kept:
                os.write(self._stdout, b"".join(kept))
        if pending:
            os.write(self._stdout, pending)

    def sync(self) -> int:
        """The errors reported so far, after flushing C's buffered output into the pipe (the count
        can still lag by the lines the pump has not read yet)."""
        flush_c_streams()
        return self.errors

    def settled_errors(self) -> int:
        """The errors reported by everything written so far: ``drain`` first, so no line still in
        the pipe is missed (what a video's last frames reported, say)."""
        self.drain()
        return self.errors

    def drain(self, timeout: float = 1.0) -> None:
        """Return once what was written to stdout so far has been passed on (so a line written to
        stderr next comes after it, as it would without the pipe)."""
        if not self._thread.is_alive() or os.getpid() != self.pid:
            return
        with self._drain_lock:
            sys.stdout.flush()
            flush_c_streams()
            self._drained.clear()
            os.write(1, DRAINED)
            self._drained.wait(timeout)

    def close(self) -> None:
        """Give fd 1 back (at exit): what is still in the pipe is passed on first."""
        if self._thread.is_alive() and os.getpid() == self.pid:
            sys.stdout.flush()
            flush_c_streams()
            os.dup2(self._stdout, 1)  # closes the pipe's last writer in this process: the pump ends
            self._thread.join(timeout=2)


_decoder_log: DecoderLog | None = None


_decoder_lock = threading.Lock()


def watch_decoder_errors() -> None:
    """Have FFmpeg report its decoding errors (only errors: ``AV_LOG_ERROR``) where ``VideoFrames``
    counts them instead of printing them (``DecoderLog``). A process setting, for the command layer; it applies to
    captures opened after it, and spawned worker processes inherit it."""
    os.environ["OPENCV_FFMPEG_DEBUG"] = "1"  # OpenCV passes FFmpeg's messages on only with this
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "16"  # AV_LOG_ERROR: errors, not FFmpeg's chatter
    os.environ[WATCH_DECODER] = "1"
    decoder_log()


def drain_stdout() -> None:
    """Wait until this process's stdout reached its destination, where a ``DecoderLog`` holds it in a
    pipe; flush it otherwise."""
    log = _decoder_log
    if log is not None and log.pid == os.getpid():
        log.drain()
    else:
        sys.stdout.flush()


def decoder_log() -> DecoderLog | None:
    """This process's ``DecoderLog`` when ``watch_decoder_errors`` is on (here or in the process
    that started this one), else None."""
    global _decoder_log
    if os.environ.get(WATCH_DECODER) != "1":
        return None
    with _decoder_lock:
        if _decoder_log is None or _decoder_log.pid != os.getpid():
            _decoder_log = DecoderLog()
        return _decoder_log
