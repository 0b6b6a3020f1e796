"""The CLI's saved files (an index, a task head): written whole or not at all, so that a failed or interrupted save
never leaves half a file where a good one was, and read back with a message that names the file."""
from __future__ import annotations

import os
from pathlib import Path


def read_whole(path: str | os.PathLike, what: str, error: type[Exception]) -> bytes:
    """path's bytes; a file that cannot be read raises `error` naming the path, `what` it is and why."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror})") from None


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
