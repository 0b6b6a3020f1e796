"""Writing a file whole or not at all: what the CLI's outputs (an index, a task head) need, so that a failed or
interrupted save never leaves half a file where a good one was."""
from __future__ import annotations

import os
from pathlib import Path


def write_whole(path: str | os.PathLike, data: bytes) -> Path:
    """Write data to a temporary file beside path, flush it to disk, then rename it over path."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
