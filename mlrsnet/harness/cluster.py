"""Connecting to Ray, for ``mlrsnet-bench run --executor ray`` and ``mlrsnet-bench tune``.

One helper, :func:`connect`, used by both commands:

- an ``--address`` (or ``$RAY_ADDRESS``) is probed with a plain TCP connection before
  ``ray.init`` is called: a closed port or an unreachable host fails within
  :data:`CONNECT_TIMEOUT_S` with one paragraph naming the address (exit code 2; Ray itself
  retries for about 14 minutes), and a ``ray.init`` that still does not return in twice
  that time ends the command the same way;
- a head started with token authentication (``RAY_AUTH_MODE=token``) refuses a driver
  without its token: that is reported as one paragraph saying what to set (exit code 2);
- on success one line names the cluster and its resources;
- :func:`watch` then probes the head while the command runs: when it stops answering the
  command ends with :data:`EXIT_CLUSTER_LOST` (3) and a line saying that the same command
  resumes (finished runs and trials are kept).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlrsnet.errors import UserError

#: Seconds a connection to ``--address`` may take before the command gives up (the TCP
#: probe and ``ray.init`` together); ``$MLRSNET_RAY_CONNECT_TIMEOUT`` overrides it.
CONNECT_TIMEOUT_S = 30.0
#: Exit code of a command whose cluster went away while it ran (a rerun resumes).
EXIT_CLUSTER_LOST = 3
#: The head is probed every WATCH_INTERVAL_S seconds; WATCH_MISSES failed probes in a row
#: mean it is gone.
WATCH_INTERVAL_S = 5.0
WATCH_MISSES = 3

AUTH_HINT = ("the Ray cluster at {address} uses token authentication and refused this "
             "command ({detail}). Set RAY_AUTH_MODE=token in this shell (a driver given an "
             "explicit address never turns it on itself) and make the head's token "
             "available: RAY_AUTH_TOKEN=<token>, or RAY_AUTH_TOKEN_PATH=<file holding it> "
             "(default ~/.ray/auth_token; `ray get-auth-token` on the head prints it), then "
             "run the same command again.")


class ClusterLost(UserError):
    """The Ray cluster stopped answering while the command ran."""

    exit_code = EXIT_CLUSTER_LOST


@dataclass(frozen=True)
class Connection:
    """What :func:`connect` connected to."""

    #: Whether this call started Ray (the caller shuts it down).
    started: bool
    #: The address asked for (``None``: a local instance).
    address: str | None
    #: The GCS address Ray reports (what :func:`watch` probes).
    gcs_address: str | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    nodes: int = 0

    def describe(self) -> str:
        cpus, gpus = self.resources.get("CPU", 0.0), self.resources.get("GPU", 0.0)
        what = (f"connected to the Ray cluster at {self.address} (GCS {self.gcs_address})"
                if self.address else "started a local Ray instance" if self.started
                else f"using the running Ray instance (GCS {self.gcs_address})")
        nodes = f"{self.nodes} node{'s' if self.nodes != 1 else ''}, "
        return f"ray: {what}: {nodes}{cpus:g} CPUs, {gpus:g} GPUs"


def connect_timeout() -> float:
    text = os.environ.get("MLRSNET_RAY_CONNECT_TIMEOUT", "").strip()
    try:
        return float(text) if text else CONNECT_TIMEOUT_S
    except ValueError:
        raise UserError(f"$MLRSNET_RAY_CONNECT_TIMEOUT must be a number of seconds, got {text!r}") from None


def host_port(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; ``None`` for ``auto``,
    ``local`` or no address (Ray finds those itself)."""
    if not address or address in ("auto", "local"):
        return None
    text = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        if "://" in address:  # ray://host without a port: Ray Client's default
            return text, 10001
        raise UserError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379 or "
                        "ray://10.0.0.1:10001)")
    return host.strip("[]") or "127.0.0.1", int(port)


def probe(host: str, port: int, timeout: float) -> str | None:
    """``None`` if something accepts a TCP connection at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _unreachable(address: str, why: str, waited: float) -> UserError:
    return UserError(
        f"could not connect to the Ray cluster at {address}: {why} (gave up after {waited:.0f} s). "
        "Check that its head is running (`ray start --head` there; `ray status "
        f"--address {address}` on this machine), that the address is the head's GCS "
        "address (HOST:6379 by default) or its Ray Client address (ray://HOST:10001), and "
        "that no firewall blocks the port; without --address a local Ray instance is started.")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_auth_error(exc: BaseException, log: str = "") -> bool:
    """Whether ``exc`` (or an exception it was raised from, or Ray's log ``log`` written
    meanwhile) is Ray refusing a missing or wrong authentication token.  Ray raises a
    ``ConnectionError`` from a ``RuntimeError`` whose text holds the
    ``ray.exceptions.AuthenticationError`` (``InvalidAuthToken``)."""
    for e in _chain(exc):
        names = {cls.__name__ for cls in type(e).__mro__}
        text = str(e)
        if ("AuthenticationError" in names or "AuthenticationError" in text
                or "InvalidAuthToken" in text or "UNAUTHENTICATED" in text):
            return True
    return "InvalidAuthToken" in log


def _auth_detail(exc: BaseException, log: str) -> str:
    for text in [*(str(e) for e in _chain(exc)), log]:
        for line in text.splitlines():
            if "InvalidAuthToken" in line:
                line = line.split("InvalidAuthToken", 1)[1].lstrip(": ")
                return "InvalidAuthToken: " + line.split(". ", 1)[0].rstrip(".")
    return _first_line(exc)


@contextlib.contextmanager
def _ray_log_captured(enabled: bool) -> Iterator[dict[str, Any]]:
    """While connecting, what Ray's C++ core writes to fd 2 (a warning per retry, e.g.
    ``Failed to get cluster ID from GCS server: ... InvalidAuthToken``) goes to a temporary
    file: ``box["log"]`` afterwards, and ``box["stderr"]``: a descriptor of the real
    stderr meanwhile.  Replayed by the caller on success, summarised on failure."""
    import tempfile

    box: dict[str, Any] = {"log": "", "stderr": 2}
    if not enabled:
        yield box
        return
    sys.stderr.flush()
    saved = os.dup(2)
    box["stderr"] = saved
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            box["stderr"] = 2
            tmp.seek(0)
            box["log"] = tmp.read().decode(errors="replace")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _hard_deadline(address: str, seconds: float, box: Mapping[str, Any]) -> threading.Timer:
    """Ends the process (exit 2) if ``ray.init`` has not returned after ``seconds``: a
    handshake that hangs cannot be interrupted from Python."""
    def give_up() -> None:
        msg = f"mlrsnet-bench: error: {_unreachable(address, 'ray.init did not return', seconds)}\n"
        with contextlib.suppress(OSError):
            os.write(box["stderr"], msg.encode())
        os._exit(UserError.exit_code)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    return timer


def connect(address: str | None = None, *, quiet: bool = False, log_to_driver: bool | None = None,
            env: Mapping[str, str] | None = None, say: Callable[[str], None] | None = None,
            **init_kwargs: Any) -> Connection:
    """Connect to the cluster at ``address`` (else ``$RAY_ADDRESS``), or start a local Ray
    instance; reuse a Ray already initialised in this process.  Prints one line naming
    what it connected to and its resources (unless ``quiet``).  ``env`` is forwarded to
    the workers (``runtime_env.env_vars``)."""
    import ray

    from mlrsnet.harness.ray_helpers import HelperRecord, end_orphans

    say = say or (lambda msg: None if quiet else print(msg, file=sys.stderr, flush=True))
    if ray.is_initialized():
        return _connection(False, address)
    end_orphans(say)  # what an earlier driver on this host, killed, left running
    target = address or os.environ.get("RAY_ADDRESS") or None
    hp = host_port(target)
    deadline = connect_timeout()
    t0 = time.monotonic()
    if hp is not None:
        why = None
        while True:  # a head that is just starting refuses for a moment
            left = deadline - (time.monotonic() - t0)
            why = probe(*hp, timeout=max(0.5, min(5.0, left)))
            if why is None or time.monotonic() - t0 + 1.0 >= deadline:
                break
            time.sleep(1.0)
        if why is not None:
            raise _unreachable(target, why, time.monotonic() - t0)
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": (not quiet) if log_to_driver is None else log_to_driver}
    if env:
        kwargs["runtime_env"] = {"env_vars": dict(env)}
    kwargs.update(init_kwargs)
    # A port that accepts connections but never completes Ray's handshake: give ray.init
    # twice the probe's time (a loaded driver machine is slow to start its core worker).
    # Only a connection to an address is captured: a local instance's processes would
    # inherit the temporary file as their stderr.
    error: Exception | None = None
    with _ray_log_captured(hp is not None) as box:
        timer = _hard_deadline(target, 2 * deadline, box) if hp is not None else None
        if timer is not None:
            timer.start()
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:
            error = exc
        finally:
            if timer is not None:
                timer.cancel()
    if error is None:
        if box["log"].strip():
            sys.stderr.write(box["log"])
    else:
        where = target or "the local Ray instance"
        if is_auth_error(error, box["log"]):
            raise UserError(AUTH_HINT.format(address=where, detail=_auth_detail(error, box["log"]))) from None
        if isinstance(error, ConnectionError | TimeoutError):
            raise _unreachable(where, _first_line(error), time.monotonic() - t0) from None
        if hp is not None:
            raise UserError(f"could not connect to the Ray cluster at {where}: "
                            f"{type(error).__name__}: {_first_line(error)}") from None
        raise error
    if target in (None, "local"):  # this process is the driver of a local instance
        HelperRecord().start()
    conn = _connection(True, target)
    say(conn.describe())
    return conn


def _connection(started: bool, address: str | None) -> Connection:
    import ray

    gcs = None
    with contextlib.suppress(Exception):
        gcs = ray.get_runtime_context().gcs_address
    resources: dict[str, float] = {}
    nodes = 0
    with contextlib.suppress(Exception):
        resources = {k: float(v) for k, v in ray.cluster_resources().items()}
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return Connection(started=started, address=address, gcs_address=gcs, resources=resources,
                      nodes=nodes)


def lost_message(address: str | None) -> str:
    return (f"the Ray cluster at {address} stopped answering (its head is gone); run the "
            "same command again once it is back: finished runs and trials are kept and the "
            "search resumes where it stopped")


def head_alive(conn: Connection, timeout: float = 5.0) -> bool:
    """One probe of the head's GCS port (``True`` when there is nothing to probe)."""
    hp = host_port(conn.gcs_address) if conn.gcs_address else host_port(conn.address)
    return hp is None or probe(*hp, timeout=timeout) is None


@contextlib.contextmanager
def watch(conn: Connection, *, interval: float | None = None, misses: int | None = None,
          on_lost: Callable[[str], None] | None = None) -> Iterator[None]:
    """Probe the head of a cluster given by address while the block runs; after ``misses``
    failed probes in a row call ``on_lost(message)`` (default: print it and end the process
    with :data:`EXIT_CLUSTER_LOST`: Ray's own driver would otherwise hang, or kill the
    process from C++ after a minute without a word).  A local instance is not watched."""
    if conn.address is None:
        yield
        return
    interval = WATCH_INTERVAL_S if interval is None else interval
    misses = WATCH_MISSES if misses is None else misses

    def lost(message: str) -> None:
        print(f"mlrsnet-bench: error: {message}", file=sys.stderr, flush=True)
        os._exit(EXIT_CLUSTER_LOST)

    action = on_lost or lost
    stop = threading.Event()

    def loop() -> None:
        failed = 0
        while not stop.wait(interval):
            failed = 0 if head_alive(conn, timeout=min(5.0, interval)) else failed + 1
            if failed >= misses:
                action(lost_message(conn.address))
                return

    thread = threading.Thread(target=loop, name="mlrsnet-ray-watch", daemon=True)
    thread.start()
    try:
        yield
    except Exception as exc:
        if isinstance(exc, UserError) or head_alive(conn):
            raise
        raise ClusterLost(lost_message(conn.address)) from None
    finally:
        stop.set()
