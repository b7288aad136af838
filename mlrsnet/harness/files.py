"""Files that are never torn, and the leftovers of writers that died: shared by the Parquet
store and the loop's epoch checkpoints.

:func:`atomic_write` writes to a temporary file in the same folder, named after its owner
(``.<name>.<host>-<pid>.<random>.tmp``, so two writers never share one), fsyncs it, renames
it over the target and fsyncs the folder; on any error the temporary file is removed.  The
next write in a folder removes stale temporary files (:func:`clean_stale_tmp`): those of dead
processes on this host, those older than :data:`STALE_TMP_S` and ownerless ones
(``.<name>.tmp`` or ``<name>.tmp``, written by versions before owner-named temporary files).
New files get mode ``0666 & ~umask``, as ``open()`` would (``mkstemp`` would use 0600).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

#: Temporary files older than this are stale whoever wrote them.
STALE_TMP_S = 3600.0

HOST = socket.gethostname()
_TMP_RE = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.)?[0-9a-z_]+\.tmp$")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def pid_start(pid: int) -> str | None:
    """The process's start time (Linux), to tell a reused pid from its first owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22: starttime


def owner_alive(host: Any, pid: Any, start: Any = None) -> bool | None:
    """True/False for an owner on this host; None when it is on another host (unknowable)."""
    if not host or pid is None or (isinstance(pid, float) and pid != pid):
        return None
    if host != HOST:
        return None
    pid = int(pid)
    if not pid_alive(pid):
        return False
    if start and pid_start(pid) not in (None, str(start)):
        return False  # the pid was reused by another process
    return True


def _tmp_is_stale(path: Path) -> bool:
    m = _TMP_RE.match(path.name)
    if m is None:
        return False
    if m["pid"] is None:  # ownerless: only versions before owner-named temp files wrote these
        return True
    if m["host"] == host_tag() and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
        return True
    try:
        return time.time() - path.stat().st_mtime > STALE_TMP_S
    except OSError:
        return False


def host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", HOST) or "host"


def clean_stale_tmp(folder: Path) -> list[Path]:
    """Remove the temporary files of interrupted writes in ``folder``."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        if p.name.startswith(".") and p.name.endswith(".tmp") and _tmp_is_stale(p):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def create_file(path: Path) -> int:
    """Open a new file for writing with mode ``0666 & ~umask`` (mkstemp would use 0600)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A temporary file for ``path``, in its folder, named after this process."""
    return path.parent / f".{path.name}.{host_tag()}-{os.getpid()}.{secrets.token_hex(4)}.tmp"


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(fh)`` into a temporary file, then rename it over ``path`` (see module doc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path.parent)
    tmp = temp_path(path)
    try:
        with os.fdopen(create_file(tmp), "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
