"""Files written whole or not at all (articles, the feeds' state, the followed feeds)."""

from __future__ import annotations

import os
from pathlib import Path

# A temporary file is hidden and ends so: never read as an article, removed by the next run.
TEMP_SUFFIX = ".part"


def write_atomically(path: Path, text: str) -> None:
    """Write the file whole or not at all: a hidden temporary file, synced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
