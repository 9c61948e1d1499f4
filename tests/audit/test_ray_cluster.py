"""The Ray engine on a real two-node cluster on loopback (a head and a worker node, each with
its own CPU, started here and stopped after): replicas fill the cluster, batches carry bytes,
and a worker node killed mid-audit still ends with every image recorded exactly once."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.audit.ray_cluster import LocalCluster
from tests.audit.tiny_model import tiny_loaded, write_synthetic

pytest.importorskip("ray")

from cnnlens.audit import AuditConfig, run_audit  # noqa: E402
from cnnlens.audit.ray_engine import ship  # noqa: E402
from cnnlens.audit.records import AuditItem  # noqa: E402
from cnnlens.audit.replicas import ReplicaPool, ReplicaShape  # noqa: E402
from cnnlens.audit.store import JobInfo  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(worker_cpus=1, head_cpus=1) as running:
        yield running


def test_replicas_fill_the_cluster() -> None:
    assert ReplicaShape().resolve({"CPU": 2.0}) == (2, 1.0, 0.0)
    assert ReplicaShape(cpus_per_replica=2).resolve({"CPU": 7.0}) == (3, 2, 0.0)
    assert ReplicaShape().resolve({"CPU": 16.0, "GPU": 2.0}) == (2, 1.0, 1.0)
    assert ReplicaShape(replicas=5).resolve({"CPU": 1.0}) == (5, 1.0, 0.0)


def test_batches_carry_bytes_never_paths(tmp_path: Path) -> None:
    folder = write_synthetic(tmp_path / "in", 3)
    items = [AuditItem(i, p.name, str(p)) for i, p in enumerate(sorted(folder.iterdir()))]
    items.append(AuditItem(3, "gone.png", str(tmp_path / "gone.png")))
    with ThreadPoolExecutor(2) as readers:
        shipped, failed = ship(items, readers)
    assert [it.path for it in shipped] == ["", "", ""]
    assert [it.data for it in shipped] == [Path(it.path).read_bytes() for it in items[:3]]
    assert [f.index for f in failed] == [3]
    assert str(tmp_path) not in failed[0].record["error"]


def _recorded(store: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT idx, COUNT(*) FROM items WHERE status != 'pending' GROUP BY idx"
        ).fetchall()


def _alive_nodes(address: str) -> list[dict[str, Any]]:
    """The cluster's live nodes, once the dead one is marked dead (a bounded wait: Ray's
    health checks take a few seconds to give up on a node)."""
    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        deadline = time.monotonic() + 120
        while True:
            alive = [node for node in ray.nodes() if node["Alive"]]
            if len(alive) == 1 or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)
    finally:
        ray.shutdown()


def test_worker_node_killed_mid_audit(
    cluster: LocalCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    count = 80
    source = write_synthetic(tmp_path / "in", count)
    killed: list[int] = []
    start_pool = ReplicaPool.__init__

    def all_started(pool: ReplicaPool, *args: Any) -> None:
        """The known state to kill in: both replicas run before the first batch goes out."""
        start_pool(pool, *args)
        deadline = time.monotonic() + 300
        while pool._starting and time.monotonic() < deadline:
            started, _ = ray.wait(list(pool._starting), num_returns=1, timeout=5)
            for ref in started:
                pool._started(ref)
        assert len(pool._load) == 2, "both replicas should have started"

    monkeypatch.setattr(ReplicaPool, "__init__", all_started)
    submitted: list[int] = []
    submit = ReplicaPool.submit

    def counted(pool: ReplicaPool, batch: list[AuditItem]) -> None:
        submitted.append(len(batch))
        submit(pool, batch)

    monkeypatch.setattr(ReplicaPool, "submit", counted)

    def kill_once(job: JobInfo) -> None:
        if not killed and job.done >= 12:
            killed.append(cluster.kill_worker_raylet())

    run = run_audit(
        source, tmp_path / "out", AuditConfig(model="tiny", batch_size=2), engine="ray",
        model=tiny_loaded(), ray_address=cluster.address, on_progress=kill_once,
    )  # fmt: skip
    assert killed, "the worker node was never killed"
    # the replica there held batches (each started replica gets its share in flight): they
    # ran again on the head node's replica
    assert len(submitted) > count // 2 and sum(submitted) > count
    assert run.job.status == "done" and run.job.done == count and run.job.errors == 0
    assert run.processed == count
    recorded = _recorded(tmp_path / "out" / "audit.sqlite")
    assert [idx for idx, _ in recorded] == list(range(count))
    assert all(times == 1 for _, times in recorded)
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == count
    alive = _alive_nodes(cluster.address)
    assert len(alive) == 1 and "head_node" in alive[0]["Resources"]
