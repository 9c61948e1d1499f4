"""`cnnlens audit --engine ray --ray-address ADDR` against a cluster it cannot use: a
token-protected cluster and no token here, token authentication off here, a cluster of another
Ray release, an address where nothing listens. Each ends with exit status 2 and one sentence
that says why, no traceback, no output folder and no job on the cluster.

The cluster is a real one on loopback, started here with its own token file
(RAY_AUTH_TOKEN_PATH) and saying it runs Ray 2.0.0."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audit.ray_cluster import _KEEP_LOOPBACK, AUTH_ENV, ROOT, LocalCluster, _free_port
from tests.audit.tiny_model import write_synthetic

ray = pytest.importorskip("ray")

OTHER_RELEASE = "2.0.0"
CLI = f"{_KEEP_LOOPBACK}; import sys; from cnnlens.cli import main; sys.exit(main(sys.argv[1:]))"


def _jobs(cluster: LocalCluster) -> int:
    """How many drivers (Ray jobs) the cluster has ever had, this check's own included."""
    code = (
        f"{cluster.prelude}; import ray; ray.init(address={cluster.address!r}, "
        "log_to_driver=False); print(len(ray._private.state.jobs()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=cluster.env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(worker_cpus=0, head_cpus=1, ray_version=OTHER_RELEASE) as running:
        yield running


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("photos"), 2)


def _environment(home: Path, **ray: str) -> dict[str, str]:
    """This machine's environment with no Ray setting but `ray` (and a home with no token)."""
    kept = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    return {**kept, "HOME": str(home), "PYTHONPATH": str(ROOT), **ray}


def _audit(
    photos: Path, out: Path, address: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", CLI, "audit", str(photos), "--engine", "ray",
               "--ray-address", address, "--weights", "none", "--out", str(out)]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


CASES = {
    "no token here": (
        {"RAY_AUTH_MODE": "token"},
        "uses token authentication and this machine has no token for it",
    ),
    "token authentication off here": ({}, "refused this machine's credentials"),
    "another Ray release": (
        AUTH_ENV,
        f"runs Ray {OTHER_RELEASE} on Python {sys.version.split()[0]}, and this machine Ray "
        f"{ray.__version__}",
    ),
    "nothing listening": (AUTH_ENV, "no Ray cluster answers at"),
}


def test_each_failure_is_exit_2_and_one_sentence(
    cluster: LocalCluster, photos: Path, tmp_path: Path
) -> None:
    jobs_before = _jobs(cluster)
    for case, (settings, sentence) in CASES.items():
        env = _environment(tmp_path, RAY_AUTH_TOKEN_PATH=str(tmp_path / "no_token"))
        env.update(settings)
        address = f"127.0.0.1:{_free_port()}" if case == "nothing listening" else cluster.address
        out = tmp_path / f"out-{case.replace(' ', '-')}"
        done = _audit(photos, out, address, env)
        assert done.returncode == 2, (case, done.stdout[-2000:], done.stderr[-2000:])
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (case, done.stderr[-3000:])
        assert lines[0].startswith("cnnlens audit: error: ") and sentence in lines[0], case
        assert address in lines[0], case
        assert "Traceback" not in done.stderr + done.stdout, case
        assert not out.exists(), case  # no output folder, no job store: nothing to resume
    assert _jobs(cluster) == jobs_before + 1  # only the second count's own driver: no job left
