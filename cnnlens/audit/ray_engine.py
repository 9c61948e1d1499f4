"""The same audit on a Ray cluster, with no shared filesystem: Ray Data's readers read each
batch's image bytes (URIs on the cluster, local files on this machine's node; see ray_reader)
and the bytes go to model replicas sized by the cluster's resources; the outcomes (overlays
included) come back here and go through the engine's one batch loop into the store. A replica
lost with its node has its batches run again on the others; the store records each image
once."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from cnnlens.audit.config import AuditConfig
from cnnlens.audit.engine import AuditRun, Watch, run_batches
from cnnlens.audit.ray_reader import carrying, read_with_ray_data
from cnnlens.audit.records import AuditItem, ImageOutcome, error_outcome
from cnnlens.audit.replicas import PortableModel, ReplicaPool, ReplicaShape
from cnnlens.audit.sources import is_uri, read_bytes
from cnnlens.audit.store import AuditStore
from cnnlens.errors import CnnlensError
from cnnlens.models.loaded import LoadedModel

logger = logging.getLogger("cnnlens.audit")
_READ_THREADS = 8
LOOPBACK = "127.0.0.1"  # a Ray started here listens on this machine only


def execute_on_ray(
    store: AuditStore,
    job_id: str,
    config: AuditConfig,
    watch: Watch = Watch(),
    address: str | None = None,
    shape: ReplicaShape = ReplicaShape(),
    model: LoadedModel | None = None,
) -> AuditRun:
    """Analyze the job's pending images on Ray (connecting to `address`, or the running
    instance, or a new local one on loopback); this process writes every result into the
    store. `model` ships a model made in this process to the replicas (else each loads
    `config.model`)."""
    with ray_connected(address):
        portable = PortableModel.of(model) if model is not None else None

        def analyze(pending: Iterable[AuditItem]) -> Iterator[list[ImageOutcome]]:
            return _analyze_on_ray(pending, config, shape, portable)

        return run_batches(store, job_id, analyze, watch)


class RayConnectionError(CnnlensError):
    """Ray cannot be reached or joined from here: one sentence that says why."""

    code = "ray_unavailable"
    status = 503


@contextmanager
def ray_connected(address: str | None) -> Iterator[None]:
    """Ray in this process: the instance already running, a connection to `address`, or a new
    local instance on loopback (address None); what this opened is shut down after.

    A cluster that does not answer, that wants an auth token this machine lacks, or that runs
    another Ray or Python version is a RayConnectionError saying so, before any work.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if address and address not in ("auto", "local"):
        _check_reachable(address)
    where: dict[str, Any] = (
        {"address": address} if address else {"address": "local", "_node_ip_address": LOOPBACK}
    )
    failure: str | None = None
    with _stderr_captured() as captured:
        try:
            ray.init(
                **where, include_dashboard=False, log_to_driver=False,
                logging_level=logging.WARNING,
            )  # fmt: skip
        except Exception as error:  # Ray's own errors: ConnectionError, RuntimeError, ...
            failure = _connection_failure(error, address or "local")
    if failure is not None:  # what Ray's core logged while retrying says it less clearly
        raise RayConnectionError(failure)
    sys.stderr.write(captured.text)  # joined: Ray's notes, as they would have come
    try:
        yield
    finally:
        ray.shutdown()


class _Captured:
    text = ""


@contextmanager
def _stderr_captured() -> Iterator[_Captured]:
    """What this process writes to its stderr (file descriptor 2, where Ray's C++ core logs)
    inside the block, kept instead of shown."""
    captured = _Captured()
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to take over
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")


_CONNECT_TIMEOUT_S = 10.0
_VERSIONS = re.compile(
    r"started with:\s*Ray: (\S+)\s*Python: (\S+).*started with:\s*Ray: (\S+)\s*Python: (\S+)",
    re.DOTALL,
)


def _check_reachable(address: str) -> None:
    """Something listens at the address's host and port (Ray itself would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isascii() or not port.isdigit():
        raise RayConnectionError(
            f"the Ray address {address!r} is not host:port (or auto); give the head node's "
            "GCS address, e.g. 10.0.0.5:6379"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), _CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RayConnectionError(
            f"no Ray cluster answers at {address} ({reason.lower()}): check the address and "
            "that the cluster is running"
        ) from None


def _connection_failure(error: BaseException, address: str) -> str:
    """What went wrong joining Ray, as one sentence (Ray's own text is a page long)."""
    from ray.exceptions import AuthenticationError

    chain = [error, *(_causes(error))]
    text = " ".join(str(link) for link in chain)
    if any(isinstance(link, AuthenticationError) for link in chain):
        return (
            f"the Ray cluster at {address} uses token authentication and this machine has no "
            "token for it: put the cluster's token in ~/.ray/auth_token, or name it with "
            "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN"
        )
    if "Unauthenticated" in text or "InvalidAuthToken" in text:
        return (
            f"the Ray cluster at {address} refused this machine's credentials: it uses token "
            "authentication, so set RAY_AUTH_MODE=token and give the cluster's token with "
            "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN"
        )
    versions = _VERSIONS.search(text)
    if "Version mismatch" in text and versions is not None:
        theirs_ray, theirs_python, ours_ray, ours_python = versions.groups()
        return (
            f"the Ray cluster at {address} runs Ray {theirs_ray} on Python {theirs_python}, "
            f"and this machine Ray {ours_ray} on Python {ours_python}: install the cluster's "
            "versions here"
        )
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return f"cannot join Ray at {address}: {first_line}"


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen = {id(error)}
    link = error.__cause__ or error.__context__
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _analyze_on_ray(
    pending: Iterable[AuditItem],
    config: AuditConfig,
    shape: ReplicaShape,
    model: PortableModel | None,
) -> Iterator[list[ImageOutcome]]:
    """Batches of outcomes, as replicas finish them (bounded in flight: flat driver memory)."""
    pool: ReplicaPool | None = None
    with ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="cnnlens-audit-read") as readers:
        try:
            for shipped, failed in read_with_ray_data(
                pending, config.batch_size, lambda batch: ship(batch, readers)
            ):
                if failed:
                    yield failed
                if not shipped:
                    continue
                if pool is None:
                    pool = ReplicaPool(config, shape, model)
                while pool.full():
                    yield from _nonempty(pool.next_done())  # [] when a replica started
                pool.submit(shipped)
            while pool is not None and pool.busy():
                yield from _nonempty(pool.next_done())
        finally:
            if pool is not None:
                pool.close()


def _nonempty(outcomes: list[ImageOutcome]) -> Iterator[list[ImageOutcome]]:
    if outcomes:
        yield outcomes


def ship(
    batch: list[AuditItem], readers: ThreadPoolExecutor
) -> tuple[list[AuditItem], list[ImageOutcome]]:
    """The batch as it travels: each item's bytes (and its mask's), no path a worker could
    open; images that cannot be read become error rows here."""
    read = list(readers.map(_read_item, batch))
    shipped = [item for item in read if isinstance(item, AuditItem)]
    failed = [outcome for outcome in read if isinstance(outcome, ImageOutcome)]
    return shipped, failed


def _read_item(item: AuditItem) -> AuditItem | ImageOutcome:
    try:
        data = read_bytes(item.path)
    except OSError as error:
        where = item.name if is_uri(item.path) else "the file"
        return error_outcome(item, f"cannot read {where}: {type(error).__name__}")
    return carrying(item, data)
