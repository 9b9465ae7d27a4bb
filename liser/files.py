"""Writing files so that a crash never leaves a half-written one where readers look."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[str], None]) -> Path:
    """Write ``data`` (text, bytes, or a function that writes the temporary path it is given) to
    a hidden temporary file beside ``path``, fsync it, then rename it over ``path``. Readers see
    the old file or the new one, never a part; the temporary file is removed on failure."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path} ({error.strerror})") from None
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.encode() if isinstance(data, str) else data)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, payload, **dumps) -> Path:
    """``payload`` as indented JSON, atomically (``dumps``: more ``json.dumps`` arguments)."""
    return atomic_write(path, json.dumps(payload, indent=dumps.pop("indent", 1), **dumps) + "\n")
