"""Can this worker use its own disk? A worker whose data directory is read-only or full fails
every heavy step in milliseconds, and Temporal's next attempt lands on it again: a black hole.
It checks before it starts and before each heavy step, and takes itself out when the answer is no.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def unusable(folders: list[Path], min_free_mb: int, min_free_inodes: int) -> str | None:
    """Why one of `folders` cannot take a step's files (not writable, too little space or too
    few inodes left), or None. Writing is tried for real: a read-only mount, a full disk and
    permissions all show there, where `os.access` would say yes to root."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".tamma-probe-") as probe:
                probe.write(b"x" * 4096)
                probe.flush()
                os.fsync(probe.fileno())
            st = os.statvfs(folder)
        except OSError as exc:
            return f"{folder} is not writable: {exc.strerror or exc}"
        free_mb = st.f_bavail * st.f_frsize // (1024 * 1024)
        if free_mb < min_free_mb:
            return f"{folder} has {free_mb} MB free, below worker.min_free_mb ({min_free_mb} MB)"
        if st.f_files and st.f_favail < min_free_inodes:
            return f"{folder} has {st.f_favail} inodes free, below worker.min_free_inodes ({min_free_inodes})"
    return None
