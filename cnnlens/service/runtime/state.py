"""What the app holds at runtime (app.state.service): settings, loaded models, their workers."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any

import torch

from cnnlens.api.forms import DEFAULT_METHOD
from cnnlens.errors import CnnlensError, ModelNotFoundError, WeightsError, did_you_mean, shown
from cnnlens.methods.cost import Budget, Calibration, calibrate
from cnnlens.methods.run import run_methods
from cnnlens.models.detection import detect
from cnnlens.models.heads import DETECTION
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.errors import NotReadyError
from cnnlens.service.metrics import Metrics
from cnnlens.service.runtime.budget import Plan, model_budget
from cnnlens.service.runtime.worker import BatchRunner, Job, ModelWorker
from cnnlens.service.settings import ModelConfig, Settings

logger = logging.getLogger("cnnlens.service")


class ServiceState:
    """Models load (and warm up) on a background thread so /healthz answers at once and
    /readyz says 503 until every configured model is ready.

    A request estimated at most `limits.express_max_forward_passes` runs on the model's
    express lane (a copy of the model on a thread of its own, with half the cores) while a
    heavier request holds the model's worker: one heavy request never holds the light ones.

    Each model is calibrated on its device as it loads (`calibrate`: the measured forward
    time and memory per row), which gives its per-request `Budget` (`budgets`); `calibrations`
    hands over fixed ones instead (tests: budgets that do not depend on the machine's load).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        preloaded: Mapping[str, LoadedModel] | None = None,
        calibrations: Mapping[str, Calibration] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, LoadedModel] = {}
        self.workers: dict[str, ModelWorker] = {}
        # A second copy of each model for light requests while a heavy one holds its worker.
        self.express: dict[str, ModelWorker] = {}
        self.budgets: dict[str, Budget] = {}
        self._calibrations = dict(calibrations or {})
        self.load_error: str | None = None
        self.started = time.monotonic()
        self._preloaded = dict(preloaded or {})
        self._ready = threading.Event()
        self._loader: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def start(self) -> None:
        self._loader = threading.Thread(target=self._load_all, name="cnnlens-loader", daemon=True)
        self._loader.start()

    def stop(self) -> None:
        if self._loader is not None:
            self._loader.join(timeout=60)
        with self._lock:
            workers = list(self.workers.values())
            workers += list(self.express.values())
        for worker in workers:
            worker.stop()

    def model(self, name: str | None) -> LoadedModel:
        """A configured model by name (None: the default), or 404 / 503 while loading."""
        name = name or self.settings.default_model
        if name not in self.settings.model_names:
            known = ", ".join(self.settings.model_names)
            hint = did_you_mean(name, self.settings.model_names) or ";"
            raise ModelNotFoundError(
                f"model {shown(name)} is not served here{hint} served: {known}"
            )
        loaded = self.models.get(name)
        if loaded is None or name not in self.workers:
            if self.load_error:
                raise NotReadyError(f"models failed to load: {self.load_error}", retry_after_s=30)
            raise NotReadyError(f"model {name!r} is still loading")
        return loaded

    def budget(self, name: str | None) -> Budget:
        """The per-request budget of a configured model (404 / 503 like `model`)."""
        return self.budgets[self.model(name).name]

    def admit(self, model: LoadedModel, plan: Plan) -> float:
        """Check `plan` against the model's budget before any work is queued (422
        over_budget / response_too_large). Returns its estimated forward-equivalents: the
        `cost` that `run` and `submit` take, which orders the model's queue, lighter first."""
        found = plan.admit(model, self.budgets[model.name], self.settings.limits)
        return found.forward_equivalents

    def submit(
        self,
        model: LoadedModel | str | None,
        work: BatchRunner,
        payload: Any,
        *,
        cost: float | None = None,
        batch_key: Hashable | None = None,
        deadline: float | None = None,
    ) -> Job[Any]:
        """Queue `work(loaded, payloads)` on that model's worker thread: the one way in.

        Every use of a model's hooks goes through its worker. `model`: a request's resolved
        model, or a name (looked up: 404 / 503). `cost`: what `admit` returned (None:
        unknown, queued after every known cost). Queue full -> 503 with Retry-After; shutting
        down -> 503. `batch_key`: equal keys may share one batch.
        """
        loaded = model if isinstance(model, LoadedModel) else self.model(model)
        return self._lane(loaded, cost).submit(
            work, payload, batch_key=batch_key, deadline=deadline, cost=cost
        )

    async def run(
        self,
        model: LoadedModel,
        work: BatchRunner,
        payload: Any,
        *,
        cost: float,
        batch_key: Hashable | None = None,
        deadline: float | None,
    ) -> Any:
        """`submit` of admitted work (`cost` from `admit`), awaited: past `deadline` (a
        time.monotonic() value) -> 504."""
        worker = self._lane(model, cost)
        job = worker.submit(work, payload, batch_key=batch_key, deadline=deadline, cost=cost)
        return await worker.wait(job)

    def worker(self, name: str | None) -> ModelWorker:
        """The worker thread that owns a configured model (for its queue depth and metrics)."""
        return self.workers[self.model(name).name]

    def _lane(self, model: LoadedModel, cost: float | None) -> ModelWorker:
        """The express lane for a light job while a heavier one runs, else the worker."""
        worker = self.workers[model.name]
        express = self.express.get(model.name)
        light = self.settings.limits.express_max_forward_passes
        if express is None or cost is None or cost > light or worker.running_cost <= light:
            return worker
        return express

    def _load_all(self) -> None:
        try:
            for config in self.settings.models:
                loaded = self._load(config)
                if self.settings.warmup:
                    warm_up(loaded)
                calibration = self._calibrations.get(config.name) or calibrate(loaded)
                budget = model_budget(calibration, self.settings.limits)
                worker = ModelWorker(loaded, self.settings.limits, self.metrics)
                worker.start()
                express = self._express_lane(loaded)
                with self._lock:
                    if express is not None:
                        self.express[config.name] = express
                    self.budgets[config.name] = budget
                    self.models[config.name] = loaded
                    self.workers[config.name] = worker
                logger.info("model ready", extra={"model": config.name})
            self._ready.set()
        except CnnlensError as error:
            self.load_error = error.message
            logger.error("model loading failed: %s", error.message)
        except Exception as error:  # a bug or a broken environment: keep serving /healthz
            self.load_error = f"{type(error).__name__}: {error}"
            logger.exception("model loading failed")

    def _express_lane(self, loaded: LoadedModel) -> ModelWorker | None:
        if self.settings.limits.express_max_forward_passes <= 0:
            return None
        threads = max(1, torch.get_num_threads() // 2)
        lane = ModelWorker(
            copy.deepcopy(loaded), self.settings.limits, lane="express", threads=threads
        )
        lane.start()
        return lane

    def _load(self, config: ModelConfig) -> LoadedModel:
        device = config.device or self.settings.device
        loaded = self._preloaded.get(config.name) or config.load(device)
        if config.sha256 is not None and loaded.weights_sha256 != config.sha256:
            raise WeightsError(
                f"weights of {config.name!r} have sha256 {loaded.weights_sha256}, "
                f"expected {config.sha256}"
            )
        loaded.layers  # noqa: B018  (trace the layer inventory now, not on the first request)
        return loaded


def warm_up(loaded: LoadedModel) -> None:
    """One forward and one Grad-CAM on a gray image: allocators and kernels are ready (a
    detector: one forward, a gray image having nothing to explain)."""
    height, width = loaded.input_size
    x = torch.zeros(1, 3, height, width)
    if loaded.head == DETECTION:
        detect(loaded, x)
        return
    run_methods(loaded, x, [(DEFAULT_METHOD, {})])
