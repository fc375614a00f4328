"""A command's console output, tee'd: the user sees it live, the run keeps its last part.

``reprokit run`` reads the child's stdout and stderr through pipes, writes each chunk on to
where it would have gone at once, and keeps the most recent ``limit`` bytes of both streams,
whole line by whole line (two pipes read by two threads give no order finer than that: a line
of stderr must not land inside a line of stdout, where it could also split a secret). When the
command ends the kept text is redacted and written into the run folder as ``console.log``
through the store.
"""

from __future__ import annotations

import os
import threading
from collections import deque

from reprokit._model.redact import redact_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

CONSOLE = "console.log"
DEFAULT_LIMIT = 8 * 1024 * 1024  # bytes of output a run keeps (the last ones)
_CHUNK = 65536
_LONGEST_LINE = 65536  # a line without an end (a progress bar's redraws) is kept in parts


class ConsoleTee:
    """Reader threads for a child's output pipes: pass each chunk on, keep the last bytes."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.total = 0  # bytes the command wrote
        self._kept: deque[bytes] = deque()
        self._kept_size = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._partial: dict[int, bytes] = {}  # per stream: the start of a line not yet ended

    def follow(self, pipe: IO[bytes], sink: Any) -> None:
        """Start a thread that copies ``pipe`` to ``sink`` (a file object or a file
        descriptor) and keeps what passes."""
        fd = sink if isinstance(sink, int) else _fd_of(sink)
        stream = len(self._threads)

        def pump() -> None:
            read = pipe.fileno()
            while True:
                try:
                    chunk = os.read(read, _CHUNK)
                except OSError:
                    break
                if not chunk:
                    break
                _write_all(fd, sink, chunk)
                self._keep(stream, chunk)
            self._keep(stream, b"", end=True)
            pipe.close()

        thread = threading.Thread(target=pump, name="reprokit-console", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _keep(self, stream: int, chunk: bytes, end: bool = False) -> None:
        with self._lock:
            self.total += len(chunk)
            data = self._partial.pop(stream, b"") + chunk
            cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
            if end or len(data) > _LONGEST_LINE:
                cut = len(data) - 1
            if cut + 1 < len(data):
                self._partial[stream] = data[cut + 1 :]
            if cut >= 0:
                self._append(data[: cut + 1])

    def _append(self, lines: bytes) -> None:
        self._kept.append(lines)
        self._kept_size += len(lines)
        while self._kept_size - len(self._kept[0]) >= self.limit:
            self._kept_size -= len(self._kept.popleft())

    def wait(self, grace: float) -> None:
        """Wait until the pipes are drained; output of the command's children that still hold
        them open after ``grace`` seconds passes on but is not kept."""
        import time

        end = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def text(self) -> tuple[str, dict[str, Any]]:
        """The kept output, redacted, and its description for the manifest."""
        with self._lock:
            # (what a stream wrote after its last line end, if it is still open)
            data = b"".join([*self._kept, *self._partial.values()])
        if len(data) > self.limit:
            data = data[len(data) - self.limit :]
            # Start at a whole line (or a progress bar's redraw) when one begins soon: a secret
            # cut in half at the start would no longer look like one to the redaction.
            cuts = [i for i in (data.find(b"\n", 0, 65536), data.find(b"\r", 0, 65536)) if i >= 0]
            if cuts:
                data = data[min(cuts) + 1 :]
        text = redact_text(data.decode("utf-8", errors="replace"))
        info: dict[str, Any] = {"file": CONSOLE, "bytes": self.total}
        if len(data) < self.total:
            dropped = self.total - len(data)
            info["truncated"] = f"the first {dropped} bytes were dropped; the last part is kept"
            text = f"[reprokit: {dropped} earlier bytes of output dropped]\n" + text
        return text, info


def _fd_of(sink: Any) -> int | None:
    try:
        return int(sink.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _write_all(fd: int | None, sink: Any, chunk: bytes) -> None:
    """Pass ``chunk`` on at once (unbuffered: the user watches it live); a closed terminal
    does not stop the keeping."""
    try:
        if fd is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        else:
            sink.write(chunk.decode("utf-8", errors="replace"))
            sink.flush()
    except (OSError, ValueError):
        pass
