"""Connecting to a Ray cluster (mlrsnet.harness.cluster), shared by `run --executor ray`
and `tune`: an unreachable address fails fast, a token-auth head says what to set, the
command names what it connected to, and a head that goes away mid-run ends it with exit
code 3.  Only loopback addresses are used; nothing listens on the "unreachable" ones."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness import cluster
from mlrsnet.harness.cli import main
from mlrsnet.harness.cluster import EXIT_CLUSTER_LOST, ClusterLost, Connection, connect

SPEC_RUN = 'name = "e"\nprofile = "smoke"\nseeds = [0]\ntasks = ["resnet18-cifar10"]\n' \
           '[[methods]]\nname = "fixed"\nhparams = { lr = 0.05 }\n'
SPEC_TUNE = 'name = "t"\nprofile = "smoke"\nseeds = [0]\ntasks = ["resnet18-cifar10"]\n' \
            '[tune]\nsearchers = ["random"]\n[tune.profiles.smoke]\nsamples = 1\n'


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener():
    """A loopback socket that accepts TCP connections (a stand-in for a head's port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s
    s.close()


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": ""}
    return subprocess.run([sys.executable, "-m", "mlrsnet.harness.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["run", "tune"])
def test_an_unreachable_address_fails_within_seconds_naming_it(tmp_path: Path, command: str) -> None:
    address = f"127.0.0.1:{closed_port()}"
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_RUN if command == "run" else SPEC_TUNE)
    extra = ["--executor", "ray"] if command == "run" else []
    t0 = time.monotonic()
    proc = _cli([command, str(spec), *extra, "--address", address, "--results", str(tmp_path / "r"),
                 "--quiet"], tmp_path)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    # Ray alone retried for about 14 minutes; the command's own wait is in its message (the
    # wall time adds starting Python and importing torch on a loaded machine)
    waited = re.search(r"gave up after (\d+) s", err)
    assert waited and int(waited.group(1)) <= 30, err
    assert elapsed < 120
    assert err.startswith("mlrsnet-bench: error: could not connect to the Ray cluster at " + address)
    assert "\n" not in err and "Traceback" not in err  # one paragraph
    assert "refused" in err.lower()


def test_the_probe_gives_up_within_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the tune tests' instance may be up
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("ray.init called for a closed port"))
    monkeypatch.setenv("MLRSNET_RAY_CONNECT_TIMEOUT", "3")
    address = f"127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(UserError, match=f"at {address}: .*gave up after [0-9]+ s"):
        connect(address, quiet=True)
    assert time.monotonic() - t0 < 6


def test_addresses_are_parsed() -> None:
    assert cluster.host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert cluster.host_port("ray://head:10001") == ("head", 10001)
    assert cluster.host_port("ray://head") == ("head", 10001)
    assert cluster.host_port("auto") is None and cluster.host_port(None) is None
    with pytest.raises(UserError, match="not HOST:PORT"):
        cluster.host_port("head")


def _fake_ray(monkeypatch: pytest.MonkeyPatch, init) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)


@pytest.mark.parametrize("make", [
    lambda: __import__("ray").exceptions.AuthenticationError(
        "Failed to connect to GCS: InvalidAuthToken: token mismatch"),
    lambda: RuntimeError("Status: InvalidAuthToken: the request carries no valid token"),
])
def test_a_token_auth_head_says_what_to_set(monkeypatch: pytest.MonkeyPatch, listener, tmp_path: Path,
                                            capsys: pytest.CaptureFixture, make) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"

    def init(**kw):
        raise make()

    _fake_ray(monkeypatch, init)
    with pytest.raises(UserError, match="uses token authentication") as info:
        connect(address, quiet=True)
    text = str(info.value)
    assert address in text and "RAY_AUTH_MODE=token" in text and "RAY_AUTH_TOKEN" in text
    assert "\n" not in text
    # the same through the CLI: exit 2, one paragraph, no traceback
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_RUN)
    code = main(["run", str(spec), "--executor", "ray", "--address", address,
                 "--results", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "RAY_AUTH_TOKEN" in err and "Traceback" not in err


def test_connecting_prints_one_line_naming_the_cluster_and_its_resources(
        monkeypatch: pytest.MonkeyPatch, listener) -> None:

    address = f"127.0.0.1:{listener.getsockname()[1]}"
    seen = {}
    _fake_ray(monkeypatch, lambda **kw: seen.update(kw))
    monkeypatch.setattr(cluster, "_connection", lambda started, addr: Connection(
        started, addr, gcs_address=address, resources={"CPU": 16.0, "GPU": 2.0}, nodes=2))
    lines: list[str] = []
    conn = connect(address, env={"MLRSNET_DATA_DIR": "/d"}, say=lines.append)
    assert conn.started and seen["address"] == address
    assert seen["runtime_env"] == {"env_vars": {"MLRSNET_DATA_DIR": "/d"}}
    assert lines == [f"ray: connected to the Ray cluster at {address} (GCS {address}): "
                     "2 nodes, 16 CPUs, 2 GPUs"]
    local = Connection(True, None, gcs_address="127.0.0.1:1", resources={"CPU": 2.0}, nodes=1)
    assert local.describe() == "ray: started a local Ray instance: 1 node, 2 CPUs, 0 GPUs"


WATCHED = """
import sys, time
from mlrsnet.harness.cluster import Connection, watch
conn = Connection(started=False, address=sys.argv[1], gcs_address=sys.argv[1])
with watch(conn, interval=0.2, misses=3):
    print("watching", flush=True)
    time.sleep(120)
"""


def test_a_head_that_goes_away_ends_the_command_with_exit_code_3(listener) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    proc = subprocess.Popen([sys.executable, "-c", WATCHED, address], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "watching"
        time.sleep(1.0)
        assert proc.poll() is None  # the head answers: the command goes on
        listener.close()            # the head dies
        t0 = time.monotonic()
        code = proc.wait(timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().strip()
    assert code == EXIT_CLUSTER_LOST == 3
    assert err == f"mlrsnet-bench: error: {cluster.lost_message(address)}"
    assert "run the same command again" in err and "resumes" in err


def test_an_error_raised_while_the_head_is_gone_is_reported_as_cluster_lost(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir) -> None:
    """Tune (or ray.wait) raising because the head went away: exit code 3, not a traceback."""
    from mlrsnet.harness.cli import build_parser
    from mlrsnet.paper.tune import command

    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setattr(command, "ensure_ray", lambda a, q: Connection(False, address, gcs_address=address))
    monkeypatch.setattr(command, "watch", lambda conn: __import__("contextlib").nullcontext())
    monkeypatch.setattr(command, "check_resources", lambda plans, a: None)

    def gone(req):
        raise RuntimeError("Failed to get the GCS client: Connection refused")

    monkeypatch.setattr(command, "run_search", gone)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TUNE)
    args = build_parser().parse_args(["tune", str(spec), "--results", str(tmp_path / "r"), "--quiet",
                                      "--address", address])
    with pytest.raises(ClusterLost, match="resumes") as info:
        command.tune_command(args)
    assert info.value.exit_code == 3


# -- a real head on loopback (slow: starts `ray start --head`) -------------------------------
def _pids_with(text: str) -> set[int]:
    """Processes whose command line contains ``text``, with all their descendants."""
    found, parents = set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if text in cmd:
            found.add(int(entry.name))
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    found.discard(os.getpid())
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody reaps)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture
def token_head():
    """A Ray head on a loopback port with token authentication, its processes ended after."""
    import secrets
    import shutil
    import signal

    port = closed_port()
    temp = Path(f"/tmp/mlrsnet-head-{port}")  # in every head process's command line
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2",
                        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                       env=env, check=True, capture_output=True, timeout=240)
        yield f"127.0.0.1:{port}", token, temp
    finally:  # only this head's processes (its temp dir is in their command lines) and
        # their children, taken before anything dies (an orphaned worker loses the trace)
        mine = _pids_with(str(temp))
        _kill_all(mine, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1)
            left = {pid for pid in mine if _alive(pid)} | _pids_with(str(temp))
            if not left:
                break
            mine |= left
            _kill_all(left, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        assert not _pids_with(str(temp)), "the test head's processes outlived it"


def _trial_running(results: Path) -> bool:
    runs = results / "t" / "runs"
    return runs.exists() and any(runs.glob("*.parquet"))


@pytest.mark.slow
def test_a_real_token_auth_head_refuses_then_connects_and_its_death_ends_the_search_with_3(
        token_head, tmp_path: Path, data_dir) -> None:
    import signal

    address, token, temp = token_head
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_RUN)
    no_token = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mlrsnet.harness.cli", "run", str(spec), "--executor",
                           "ray", "--address", address, "--results", str(tmp_path / "r"), "--quiet"],
                          env={**no_token, "RAY_ADDRESS": ""}, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 60
    err = proc.stderr.strip()
    assert err.startswith(f"mlrsnet-bench: error: the Ray cluster at {address} uses token authentication")
    assert "InvalidAuthToken" in err and "RAY_AUTH_MODE=token" in err and "RAY_AUTH_TOKEN" in err
    assert "\n" not in err and "Traceback" not in err  # one paragraph, Ray's retry warnings kept out

    # with the token: connects, names the cluster; then the head dies mid-trial -> exit 3
    long_spec = tmp_path / "tune.toml"
    long_spec.write_text(SPEC_TUNE.replace("[tune]", "[overrides]\nepochs = 200\n[tune]"))
    results = tmp_path / "tr"
    env = {**no_token, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    tune = subprocess.Popen([sys.executable, "-m", "mlrsnet.harness.cli", "tune", str(long_spec),
                             "--address", address, "--results", str(results), "--device", "cpu",
                             "--cpus-per-trial", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _trial_running(results) and tune.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert tune.poll() is None and _trial_running(results)
        gcs = {pid for pid in _pids_with(str(temp))
               if b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        assert gcs
        _kill_all(gcs, signal.SIGKILL)  # the head's GCS dies
        killed = time.monotonic()
        code = tune.wait(timeout=120)
        assert time.monotonic() - killed < 60
    finally:
        if tune.poll() is None:
            tune.kill()
            tune.wait()
    err = tune.stderr.read()
    assert f"ray: connected to the Ray cluster at {address} (GCS " in err and ": 1 node, 2 CPUs, 0 GPUs" in err
    assert code == 3, err[-3000:]
    assert f"mlrsnet-bench: error: {cluster.lost_message(address)}" in err
