"""Library output (TensorFlow's C++ log, absl, MLIR, the TFLite converter, XNNPACK, tf2onnx,
Python warnings) into a log file instead of the terminal.

Much of it is written by C++ straight to file descriptor 2 (absl logs before
`absl::InitializeLog()` go there whatever TF_CPP_MIN_LOG_LEVEL says), so no Python logging
filter can stop it: the descriptor itself points at the log file while the block runs, and the
tool's own lines go to a stream on the terminal's stderr.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


def _writes_to_fd2(stream: TextIO) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


@contextmanager
def library_output_to(log_path: Path) -> Iterator[TextIO]:
    """Within the block, file descriptor 2 (and so `sys.stderr`, Python warnings and logging
    handlers on it, every C++ library's stderr and child processes that inherit it) appends to
    `log_path`. Yields the stream the caller's own messages go to: the terminal's stderr, or
    `sys.stderr` itself when that is not descriptor 2 (a test runner capturing it in-process).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    own_stream = not _writes_to_fd2(sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = sys.stderr if own_stream else os.fdopen(
        os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
        errors="backslashreplace")
    try:
        with open(log_path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if not own_stream:
            terminal.close()


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null within the block, for output that says nothing even in a
    log (LiteRT's accelerator registry at every CompiledModel); failures still arrive as
    Python exceptions."""
    with library_output_to(Path(os.devnull)):
        yield
