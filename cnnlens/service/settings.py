"""Service settings: a TOML or JSON file and/or CNNLENS_* environment variables.

Precedence: defaults < config file < environment. API keys are hashed (sha256) as soon as
they are read; only the hashes are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnlens.errors import CnnlensError, validation_problems
from cnnlens.models.zoo import DEFAULT_MODEL

if TYPE_CHECKING:
    from cnnlens.models.loaded import LoadedModel

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$", re.IGNORECASE)
_HOST_NAME = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)$")
ANY_ORIGIN = ("*", "null")  # cors_origins values that name no one site


def host_name(host: str) -> str:
    """A Host header's or a host entry's name: lower case, without its port and trailing dot
    ("LocalHost.:8000" -> "localhost", "[::1]:80" -> "[::1]")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rpartition(":")[0].rstrip(".") if ":" in host else host.rstrip(".")


class SettingsError(CnnlensError):
    """A configuration file or environment variable that cannot be used."""

    code = "bad_settings"
    status = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """One model the service loads at startup; requests may only pick among these names."""

    name: str = Field(
        min_length=1, description="what requests use; the architecture too when arch is absent"
    )
    arch: str | None = Field(
        default=None, min_length=1, description="load_model architecture, e.g. timm:resnet50"
    )
    weights: str = Field(default="default", description='"default", "none" or a local file path')
    num_classes: int | None = Field(default=None, ge=1, description="outputs of the classifier")
    in_chans: Literal[1, 3] | None = Field(default=None, description="input channels (timm)")
    labels: str | None = Field(default=None, description="labels file: one per line, or JSON")
    head: Literal["softmax", "sigmoid", "binary", "segmentation", "detection"] | None = Field(
        default=None,
        description="default: segmentation for (B, K, H, W) outputs (torchvision fcn_*, "
        "deeplabv3_*, lraspp_*), detection for torchvision's detectors, else softmax",
    )
    score_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="detectors: the score a detection needs to be predicted and explained "
        "(default 0.5)",
    )
    preprocessing: dict[str, Any] | None = Field(
        default=None,
        description="input_size, mean, std, interpolation, channels, resize "
        '("whole" or "shorter-side + center-crop"), resize_size',
    )
    sha256: str | None = Field(default=None, description="expected sha256 of the weights (hex)")
    device: str | None = Field(default=None, description="overrides the service-wide device")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value.lower()):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value.lower() if value else None

    @property
    def architecture(self) -> str:
        return self.arch or self.name

    def load(self, device: str | None) -> LoadedModel:
        """Build this entry's model (the name requests use becomes the model's name)."""
        from cnnlens.models.registry import load_model

        return load_model(
            self.architecture,
            weights=self.weights,
            device=device,
            num_classes=self.num_classes,
            in_chans=self.in_chans,
            labels=self.labels,
            preprocessing=self.preprocessing,
            head=self.head,
            alias=self.name,
            score_threshold=self.score_threshold,
        )

    @model_validator(mode="after")
    def _files_are_pinned(self) -> ModelConfig:
        # A weights file is trusted only by its digest: a swapped or corrupted file is a
        # start-up error, never a model that silently answers differently.
        if self.weights not in ("default", "none") and self.sha256 is None:
            raise ValueError(
                f"model {self.name!r}: a weights file ({self.weights}) needs its sha256 "
                "in the configuration"
            )
        return self


class Limits(_Strict):
    """Resource limits; every one of them answers a clear 4xx/5xx when exceeded."""

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="image file size")
    max_form_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        description="request bytes allowed on top of the image (form fields)",
    )
    max_pixels: int = Field(default=16_000_000, ge=1, description="decoded width x height")
    max_side: int = Field(default=8192, ge=1, description="decoded width or height")
    queue_size: int = Field(default=64, ge=1, description="jobs waiting per model before 503")
    queue_max_passes: int = Field(
        default=8,
        ge=0,
        description="times lighter jobs may run before a waiting one (the queue runs the "
        "lightest estimate first; this bounds how long a heavy job waits)",
    )
    express_max_forward_passes: float = Field(
        default=8.0,
        ge=0,
        description="requests estimated at most this many forward passes run on a copy of "
        "the model while a heavier request holds its worker (0: no express lane)",
    )
    max_batch: int = Field(
        default=4,
        ge=1,
        description="requests gathered into one batched run (4: best on 2 CPU cores)",
    )
    max_batch_delay_ms: float = Field(
        default=5.0, ge=0, description="how long a batch waits for more requests"
    )
    request_deadline_s: float = Field(default=60.0, gt=0, description="past this: 504")
    max_targets: int = Field(default=16, ge=1, description="targets per explain request")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After when the queue is full")
    # Budgets: a request whose estimated work or memory exceeds them is refused up front (422).
    budget_deadline_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="share of the deadline one request may plan to use, at the forward time "
        "measured at start-up",
    )
    budget_forward_passes: float | None = Field(
        default=None,
        gt=0,
        description="forward-equivalents per request; default: from the deadline and calibration",
    )
    budget_memory_bytes: int = Field(
        default=3 * 1024**3 // 2, ge=1, description="estimated peak bytes per request (1.5 GiB)"
    )
    max_response_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="estimated response body size before 422"
    )
    max_rendered_pixels: int = Field(
        default=64_000_000,
        ge=1,
        description="pixels rendered per response (image pixels x explanations x images)",
    )
    # Connections (uvicorn's keep-alive and concurrency limits, plus read timeouts).
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="time to receive a request's line and headers"
    )
    body_idle_timeout_s: float = Field(
        default=15.0, gt=0, description="longest pause while a request body is arriving"
    )
    keep_alive_timeout_s: int = Field(
        default=5, ge=1, description="an idle keep-alive connection is closed after this"
    )
    max_connections: int = Field(
        default=256, ge=1, description="open connections served; beyond them: 503"
    )
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="request line and headers, bytes"
    )
    # Audit storage: what uploads may write under the data directory.
    data_dir_max_bytes: int | None = Field(
        default=None,
        ge=1,
        description="audit data directory quota in bytes (default: what it holds at start-up "
        "plus data_dir_disk_share of the free disk)",
    )
    data_dir_disk_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="share of the free disk at start-up the audit data directory may grow by "
        "(when data_dir_max_bytes is not set)",
    )
    archive_max_ratio: float = Field(
        default=200.0,
        ge=1,
        description="largest uncompressed:compressed size ratio of an archive member over "
        "1 MiB, read from its header before extraction (zip bombs)",
    )

    @property
    def max_request_bytes(self) -> int:
        return self.max_upload_bytes + self.max_form_bytes


class Settings(_Strict):
    """Everything the service needs; build with `load_settings` or directly."""

    models: tuple[ModelConfig, ...] = (ModelConfig.model_validate({"name": DEFAULT_MODEL}),)
    default_model: str = DEFAULT_MODEL
    device: str = Field(
        default="auto",
        validate_default=True,  # resolve the default "auto" too
        description='"auto" (the GPU when there is one), "cpu", "cuda:0", ...',
    )
    limits: Limits = Field(default_factory=Limits)
    api_key_sha256: tuple[str, ...] = Field(
        default=(),
        description="sha256 hex digests of the accepted X-API-Key values; empty = no auth",
    )
    cors_origins: tuple[str, ...] = Field(
        default=(),
        description="origins (scheme://host[:port]) whose pages may call the API; empty = none "
        "but the service's own page",
    )
    allow_any_origin: bool = Field(
        default=False,
        description='lets cors_origins hold "*" (any origin) or "null" (sandboxed and file: '
        "pages): every website a user visits could then drive the service",
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="Host names accepted besides the loopback ones (127.0.0.1, localhost, "
        "[::1]): always checked without API keys, with keys only when set",
    )
    warmup: bool = True
    log_level: str = "info"
    data_dir: str | None = Field(
        default=None,
        description="where audit jobs and their results are kept (default ~/.local/share/cnnlens)",
    )
    guide_dir: str | None = Field(
        default=None,
        description="the built documentation site served at /guide (default: where `make docs` "
        "builds it, cnnlens/service/site)",
    )

    @field_validator("device")
    @classmethod
    def _resolve_device(cls, value: str) -> str:
        if value != "auto":
            return value
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @field_validator("api_key_sha256")
    @classmethod
    def _hex_digests(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not _SHA256.match(value.lower()):
                raise ValueError("api_key_sha256 entries must be 64 hexadecimal characters")
        return tuple(value.lower() for value in values)

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for value in values:
            name = host_name(value)
            if not name or not _HOST_NAME.match(name):
                raise ValueError(
                    f"allowed_hosts entry {value[:80]!r} is not a host name or address"
                )
            names.append(name)
        return tuple(names)

    @model_validator(mode="after")
    def _origins_are_exact(self) -> Settings:
        for origin in self.cors_origins:
            if origin in ANY_ORIGIN:
                if not self.allow_any_origin:
                    raise ValueError(
                        f"cors_origins holds {origin!r}, which lets "
                        + ("any website" if origin == "*" else "sandboxed and file: pages")
                        + " drive this service from its visitors' browsers; list the exact "
                        "origins, or set allow_any_origin = true to mean it"
                    )
            elif not _ORIGIN.match(origin):
                raise ValueError(
                    f"cors_origins entry {origin[:80]!r} is not an origin: write "
                    "scheme://host[:port], with no path and no trailing slash"
                )
        return self

    @model_validator(mode="after")
    def _default_is_configured(self) -> Settings:
        names = [model.name for model in self.models]
        if not names:
            raise ValueError("configure at least one model")
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        if self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not among models {names}")
        return self

    @property
    def model_names(self) -> list[str]:
        return [model.name for model in self.models]

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_key_sha256)


def hash_api_key(key: str) -> str:
    """The stored form of an API key: its sha256 hex digest."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except OSError as error:
        raise SettingsError(f"cannot read the config file {path}: {error}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise SettingsError(f"cannot parse the config file {path}: {error}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"the config file {path} must hold a table/object")
    return data


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


_PREPROCESSING_OPTIONS = ("input_size", "resize", "resize_size")
_ENTRY_OPTIONS = (
    "arch", "num_classes", "in_chans", "labels", "head", "score_threshold",
    *_PREPROCESSING_OPTIONS,
)  # fmt: skip


def _model_entry(text: str) -> dict[str, Any]:
    """`name`, `name=weights` or `name=weights@sha256`, then optional `;key=value` options
    (arch, num_classes, in_chans, labels, head, score_threshold, and the preprocessing's
    input_size, resize and resize_size): a CNNLENS_MODELS entry."""
    text, *options = text.split(";")
    name, _, rest = text.partition("=")
    entry: dict[str, Any] = {"name": name.strip()}
    for option in options:
        key, _, value = option.partition("=")
        if key.strip() not in _ENTRY_OPTIONS or not value.strip():
            raise SettingsError(
                f"CNNLENS_MODELS option {option.strip()!r}: use key=value with key one of "
                f"{', '.join(_ENTRY_OPTIONS)}"
            )
        if key.strip() in _PREPROCESSING_OPTIONS:
            value = value.strip()
            number = value.isascii() and value.isdigit() and key.strip() != "resize"
            entry.setdefault("preprocessing", {})[key.strip()] = int(value) if number else value
        else:
            entry[key.strip()] = value.strip()
    if rest:
        weights, _, digest = rest.partition("@")
        entry["weights"] = weights.strip()
        if digest:
            entry["sha256"] = digest.strip()
    return entry


_LIMIT_VARIABLES = {
    "CNNLENS_MAX_UPLOAD_BYTES": "max_upload_bytes",
    "CNNLENS_MAX_FORM_BYTES": "max_form_bytes",
    "CNNLENS_MAX_PIXELS": "max_pixels",
    "CNNLENS_MAX_SIDE": "max_side",
    "CNNLENS_QUEUE_SIZE": "queue_size",
    "CNNLENS_MAX_BATCH": "max_batch",
    "CNNLENS_MAX_BATCH_DELAY_MS": "max_batch_delay_ms",
    "CNNLENS_REQUEST_DEADLINE_S": "request_deadline_s",
    "CNNLENS_MAX_TARGETS": "max_targets",
    "CNNLENS_BUDGET_FORWARD_PASSES": "budget_forward_passes",
    "CNNLENS_BUDGET_MEMORY_BYTES": "budget_memory_bytes",
    "CNNLENS_BUDGET_DEADLINE_SHARE": "budget_deadline_share",
    "CNNLENS_DATA_DIR_MAX_BYTES": "data_dir_max_bytes",
    "CNNLENS_DATA_DIR_DISK_SHARE": "data_dir_disk_share",
    "CNNLENS_ARCHIVE_MAX_RATIO": "archive_max_ratio",
}


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    limits = dict(data.get("limits") or {})
    for variable, field in _LIMIT_VARIABLES.items():
        if environ.get(variable):
            limits[field] = environ[variable]
    data["limits"] = limits
    if environ.get("CNNLENS_MODELS"):
        data["models"] = [_model_entry(item) for item in _split(environ["CNNLENS_MODELS"])]
    for variable, field in (
        ("CNNLENS_DEFAULT_MODEL", "default_model"),
        ("CNNLENS_DEVICE", "device"),
        ("CNNLENS_LOG_LEVEL", "log_level"),
        ("CNNLENS_WARMUP", "warmup"),
        ("CNNLENS_DATA_DIR", "data_dir"),
        ("CNNLENS_GUIDE_DIR", "guide_dir"),
    ):
        if environ.get(variable):
            data[field] = environ[variable]
    if environ.get("CNNLENS_CORS_ORIGINS"):
        data["cors_origins"] = _split(environ["CNNLENS_CORS_ORIGINS"])
    if environ.get("CNNLENS_ALLOW_ANY_ORIGIN"):
        data["allow_any_origin"] = environ["CNNLENS_ALLOW_ANY_ORIGIN"]
    if environ.get("CNNLENS_ALLOWED_HOSTS"):
        data["allowed_hosts"] = _split(environ["CNNLENS_ALLOWED_HOSTS"])
    hashes = list(data.get("api_key_sha256") or [])
    if environ.get("CNNLENS_API_KEY_SHA256"):
        hashes += _split(environ["CNNLENS_API_KEY_SHA256"])
    if environ.get("CNNLENS_API_KEYS"):
        hashes += [hash_api_key(key) for key in _split(environ["CNNLENS_API_KEYS"])]
    data["api_key_sha256"] = hashes


def load_settings(
    config: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from an optional TOML/JSON file (or $CNNLENS_CONFIG) and CNNLENS_* variables.

    Plain API keys (`api_keys` in the file, CNNLENS_API_KEYS) are hashed here and dropped.
    """
    environ = os.environ if environ is None else environ
    path = config if config is not None else environ.get("CNNLENS_CONFIG") or None
    data = _read_file(Path(path)) if path is not None else {}
    plain_keys = data.pop("api_keys", None) or []
    if not isinstance(plain_keys, list) or not all(isinstance(k, str) for k in plain_keys):
        raise SettingsError("api_keys must be a list of strings")
    data["api_key_sha256"] = list(data.get("api_key_sha256") or []) + [
        hash_api_key(key) for key in plain_keys
    ]
    _apply_environment(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        problems = validation_problems(error, "settings")
        raise SettingsError(f"invalid settings: {problems}") from None
