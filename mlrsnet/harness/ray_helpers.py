"""Ray helper processes left behind by a driver that was killed, ended by the next command.

A command that starts a local Ray instance (``run --executor ray``, ``tune``, ``reproduce``)
is its driver: Ray's processes (GCS, raylet, agents, workers) are its descendants, and a
normal exit or Ctrl-C shuts them down.  ``kill -9`` of the driver does not: the raylet's
dashboard and runtime-env agents (about 190 MB) were found running after the next command
had resumed the search.  So while a local instance runs, the driver records its
descendants (pid, start time, command line) in
``$XDG_CACHE_HOME/mlrsnet/ray-drivers/<host>-<pid>.json`` (refreshed every
:data:`REFRESH_S`, removed at a normal exit); the next command on this host
(:func:`end_orphans`, called before Ray starts) ends the processes recorded by drivers
that are gone, by recorded pid and only while that pid is still the recorded process (the
same start time, in the same boot): never by name, never a process it did not start.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlrsnet.harness.files import HOST, atomic_write, host_tag, owner_alive, pid_start

#: Seconds between two records of the driver's descendants (Ray starts agents and workers
#: after ``ray.init`` returns).
REFRESH_S = 10.0
#: Seconds an ended helper is given to exit after SIGTERM before SIGKILL.
TERM_GRACE_S = 5.0


def record_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlrsnet" / "ray-drivers"


def cmdline(pid: int) -> str | None:
    """The process's command line (Linux ``/proc``), or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def descendants(pid: int) -> list[int]:
    """The pids of ``pid``'s children, their children, ... (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[-1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, []))
    return sorted(out)


class HelperRecord:
    """The record of this driver's descendants, kept while its local Ray instance runs."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or record_dir()) / f"{host_tag()}-{os.getpid()}.json"
        self.helpers: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> None:
        """Add the driver's current descendants to the record and write it."""
        for pid in descendants(os.getpid()):
            start, cmd = pid_start(pid), cmdline(pid)
            if start is not None and cmd:  # Ray renames its processes (ray::...) once started
                self.helpers[pid] = {"pid": pid, "start": start, "cmd": cmd}
        record = {"host": HOST, "boot": boot_id(), "driver": os.getpid(),
                  "driver_start": pid_start(os.getpid()), "helpers": list(self.helpers.values())}
        with contextlib.suppress(OSError):
            atomic_write(self.path, lambda fh: fh.write(json.dumps(record).encode()))

    def start(self) -> HelperRecord:
        self.snapshot()

        def refresh() -> None:
            while not self._stop.wait(REFRESH_S):
                self.snapshot()

        self._thread = threading.Thread(target=refresh, name="mlrsnet-ray-helpers", daemon=True)
        self._thread.start()
        atexit.register(self.stop)  # a normal exit (Ray shuts its processes down itself)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)


def boot_id() -> str | None:
    """This boot's id (Linux): start times count from the boot, so a record of an earlier
    boot says nothing about the processes running now."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _alive_as_recorded(helper: dict[str, Any]) -> bool:
    """Whether the recorded pid is still the recorded process: the same start time (in
    clock ticks since boot: a reused pid has a later one)."""
    return pid_start(int(helper["pid"])) == str(helper.get("start"))


def end_orphans(say: Callable[[str], None] | None = None, folder: Path | None = None) -> list[dict[str, Any]]:
    """End the processes recorded by drivers on this host that are gone (see the module
    docstring); returns them.  Records of live drivers (and of other hosts) are left."""
    folder = folder or record_dir()
    ended: list[dict[str, Any]] = []
    for path in sorted(folder.glob(f"{host_tag()}-*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("host") != HOST:
            continue
        if record.get("boot") != boot_id():  # recorded before a reboot: its processes are gone
            path.unlink(missing_ok=True)
            continue
        if owner_alive(HOST, record.get("driver"), record.get("driver_start")) is not False:
            continue  # its driver still runs (or the record is not ours to judge)
        mine = [h for h in record.get("helpers", []) if _alive_as_recorded(h)]
        for helper in mine:
            with contextlib.suppress(OSError):
                os.kill(int(helper["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_S
        while time.monotonic() < deadline and any(_alive_as_recorded(h) for h in mine):
            time.sleep(0.1)
        for helper in mine:
            if _alive_as_recorded(helper):
                with contextlib.suppress(OSError):
                    os.kill(int(helper["pid"]), signal.SIGKILL)
        ended += mine
        if mine and say is not None:
            names = ", ".join(f"{h['pid']} {h['cmd'].split()[0]}" for h in mine)
            say(f"ray: ended {len(mine)} Ray helper process{'es' if len(mine) != 1 else ''} left running by "
                f"an earlier command (pid {record.get('driver')}, killed): {names}")
        path.unlink(missing_ok=True)
    return ended
