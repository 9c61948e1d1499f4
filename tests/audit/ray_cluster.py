"""A two-node Ray cluster on loopback for tests and benchmarks: a head and a worker node, each
its own `ray start --block` process with its own resources, stopped by killing only them."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Ray turns a 127.0.0.1 address into the machine's outward IP (where nothing of this cluster
# listens): the driver here and the worker node's `ray start` keep the address as given.
_KEEP_LOOPBACK = "import ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h"


def keep_loopback() -> None:
    """In this process (the driver): connect to 127.0.0.1 as given."""
    import ray._private.services as services

    services.resolve_ip_for_localhost = lambda host: host


ROOT = Path(__file__).resolve().parents[2]
RAY_CLI = [
    sys.executable, "-c",
    f"{_KEEP_LOOPBACK}; import sys; from ray.scripts.scripts import main;"
    " sys.argv[0] = 'ray'; main()",
]  # fmt: skip


def _auth_env() -> dict[str, str]:
    """`ray start` turns token authentication on: the clusters of this process get their own
    token, read from one file by the nodes and the drivers (set before ray reads its config)."""
    token = Path(tempfile.mkdtemp(prefix="cnrt")) / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


AUTH_ENV = _auth_env()
os.environ.update(AUTH_ENV)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Every descendant of pid (from /proc)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
                frontier.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class LocalCluster:
    """`with LocalCluster() as cluster:` a head (1 CPU) and a worker node (1 CPU) on 127.0.0.1.

    `ray_version`: the Ray version the cluster says it runs (a cluster of another release, for
    the drivers that must refuse it); its nodes and the readiness check say the same."""

    def __init__(
        self, worker_cpus: int = 1, head_cpus: int = 1, ray_version: str | None = None
    ) -> None:
        self.prelude = _KEEP_LOOPBACK + (
            f"; import ray; ray.__version__ = {ray_version!r}" if ray_version else ""
        )
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = tempfile.mkdtemp(prefix="cnr")
        self.env = {
            **os.environ,
            **AUTH_ENV,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_failure_threshold": "4",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LocalCluster:
        keep_loopback()
        try:
            self._start_nodes()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_nodes(self) -> None:
        self.head = self._start(
            "--head", "--port", str(self.port), "--num-cpus", str(self.head_cpus),
            "--include-dashboard", "false", "--temp-dir", self.temp, "--resources",
            '{"head_node": 1}',
        )  # fmt: skip
        self._wait_nodes(1)
        if self.worker_cpus:
            self.worker = self._start(
                "--address", self.address, "--num-cpus", str(self.worker_cpus), "--resources",
                '{"worker_node": 1}',
            )  # fmt: skip
            self._wait_nodes(2)

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(Path(self.temp) / f"node{len(self.processes)}.log", "wb")  # noqa: SIM115
        ray_cli = [*RAY_CLI[:2], RAY_CLI[2].replace(_KEEP_LOOPBACK, self.prelude, 1)]
        process = subprocess.Popen(
            [*ray_cli, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-gpus", "0",
             "--disable-usage-stats", *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def _wait_nodes(self, count: int, timeout: float = 300) -> None:
        code = (
            f"{self.prelude};import ray;ray.init(address=%r,log_to_driver=False);"
            "print(sum(n['Alive'] for n in ray.nodes()))" % self.address
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                [sys.executable, "-c", code], env=self.env, capture_output=True, text=True
            )
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        raise RuntimeError(f"the local Ray cluster did not reach {count} nodes")

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet, then every process it started (its workers, the
        replicas among them, die at once rather than when they notice); returns its pid."""
        for pid in _children(self.worker.pid):
            if "raylet" in _cmdline(pid).split(" ", 1)[0]:
                workers = _children(pid)
                os.kill(pid, signal.SIGKILL)
                for worker in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker, signal.SIGKILL)
                return pid
        raise RuntimeError("no raylet under the worker node's process")

    def __exit__(self, *_: object) -> None:
        for process in reversed(self.processes):
            tree = _children(process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=3)  # no graceful drain needed: the tests are done
            except subprocess.TimeoutExpired:
                process.kill()
            for pid in tree:  # what `ray start --block` left behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
