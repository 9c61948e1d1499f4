"""Dependencies shared by every router (use them as `Annotated` aliases).

    from cnnlens.service.deps import StateDep, SettingsDep, DeadlineDep, read_image, wants_png

- `StateDep`: the ServiceState (models, workers, settings, metrics).
- `SettingsDep`: the Settings.
- `DeadlineDep`: this request's deadline, a `time.monotonic()` value; pass it to
  `state.run(model, fn, payload, deadline=deadline)` so the work is dropped (504)
  when the client can no longer get an answer.
- `read_image(upload, settings)`: the uploaded file -> RGB PIL image (size limit, format
  allowlist, pixel limit, EXIF), decoded off the event loop.
- `off_loop(work, *args)`: a request's own CPU work (preprocessing, decoding) on a thread,
  with one torch intra-op thread (the model workers own the cores' parallelism).
- `render_until(deadline, work)`: the same for rendering and encoding the answer, stopped at
  the deadline or when the client leaves: `work(abort)` checks the `AbortSignal` between
  items (`abort.each(...)`), and its torch operations stop on their own.
- API keys are checked for every router in `cnnlens.service.routers.V1_ROUTERS`; nothing to
  add per route.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import anyio
import torch
from fastapi import Depends, Request, UploadFile
from PIL import Image

from cnnlens.imageio import decode_image
from cnnlens.service.errors import NotReadyError, PayloadTooLargeError, UnauthorizedError
from cnnlens.service.runtime.abort import AbortSignal, abort_when
from cnnlens.service.runtime.state import ServiceState
from cnnlens.service.runtime.worker import PER_THREAD_INTRA_OP
from cnnlens.service.settings import Settings

T = TypeVar("T")


def get_state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "service", None)
    if state is None:
        raise NotReadyError("the service is starting")
    assert isinstance(state, ServiceState)
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def request_deadline(request: Request, settings: SettingsDep) -> float:
    """Monotonic time by which this request must be answered (504 after that)."""
    started = request.scope.get("state", {}).get("started", time.monotonic())
    return float(started) + settings.limits.request_deadline_s


DeadlineDep = Annotated[float, Depends(request_deadline)]


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """401 unless X-API-Key hashes to a configured sha256 (when keys are configured)."""
    if not settings.auth_enabled:
        return
    offered = request.headers.get("x-api-key")
    if not offered:
        raise UnauthorizedError("this service needs an X-API-Key header")
    digest = hashlib.sha256(offered.encode("utf-8", "surrogateescape")).hexdigest()
    matched = False
    for stored in settings.api_key_sha256:  # no early exit: time does not depend on the match
        matched |= hmac.compare_digest(digest, stored)
    if not matched:
        raise UnauthorizedError("the X-API-Key is not valid")


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    """The uploaded bytes, refusing more than max_upload_bytes (413)."""
    limit = settings.limits.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"the image file is larger than {limit} bytes")
    return data


async def read_image(
    upload: UploadFile, settings: Settings, draft: int | None = None
) -> Image.Image:
    """Uploaded file -> RGB image, decoded on a worker thread (not the event loop); `draft`:
    a JPEG decodes at the smallest DCT scale that keeps both sides >= draft pixels."""
    data = await read_upload(upload, settings)
    limits = settings.limits
    return await off_loop(
        lambda: decode_image(
            data, max_pixels=limits.max_pixels, max_side=limits.max_side, draft=draft
        )
    )


def _with_one_intra_op_thread(work: Callable[..., T], *args: Any) -> T:
    if PER_THREAD_INTRA_OP and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return work(*args)


async def off_loop(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` on a thread, not the event loop, with one torch intra-op thread:
    sixteen concurrent requests each starting a team of OpenMP threads for their resizes
    would oversubscribe the cores the model worker's batches run on."""
    return await anyio.to_thread.run_sync(_with_one_intra_op_thread, work, *args)


async def render_until(deadline: float, work: Callable[[AbortSignal], T]) -> T:
    """`work(abort)` off the event loop until it ends, the deadline passes (504) or the
    request is cancelled (its client left): then the signal stops the thread too."""
    abort = AbortSignal(deadline)

    def guarded() -> T:
        with abort_when(abort.should_abort):
            return work(abort)

    try:
        return await anyio.to_thread.run_sync(
            _with_one_intra_op_thread, guarded, abandon_on_cancel=True
        )
    except anyio.get_cancelled_exc_class():
        abort.cancel()  # nobody will read the answer: the thread stops at its next check
        raise


def wants_png(request: Request) -> bool:
    """True when the Accept header prefers image/png to JSON (`*/*` alone means JSON)."""
    accept = request.headers.get("accept", "")
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *options = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for option in options:
            key, _, value = option.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    png = quality.get("image/png", 0.0)
    return png > 0 and png >= quality.get("application/json", 0.0)


METHOD_HEADER, TARGET_HEADER = "X-Cnnlens-Method", "X-Cnnlens-Target"
IMAGE_ANSWER_HEADERS = (METHOD_HEADER, TARGET_HEADER)  # exposed to CORS callers too


def image_headers(methods: str | list[str], target: Any = None) -> dict[str, str]:
    """What an image answer (Accept: image/png) explains, since its body cannot say it:
    `X-Cnnlens-Method: grad_cam` and `X-Cnnlens-Target: 285;label="Egyptian cat";probability=
    0.7731` (a structured field; the label percent-encoded outside printable ASCII)."""
    names = methods if isinstance(methods, str) else ",".join(methods)
    headers = {METHOD_HEADER: names}
    if target is not None:
        label = quote(str(target.label), safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")
        value = f'{int(target.index)};label="{label}"'
        if getattr(target, "probability", None) is not None:
            value += f";probability={float(target.probability):.4f}"
        headers[TARGET_HEADER] = value
    return headers
