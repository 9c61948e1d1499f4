"""The app's routers, one module per resource, each exposing `router` (a FastAPI APIRouter).

To add a resource: write `routers/<name>.py` with `router = APIRouter(prefix="/v1", ...)` (or a
function `router()` building it when the app is created, as `visualize` does from the method
registry) and
add its module name to `V1_ROUTERS` (API-key protected) or `PUBLIC_ROUTERS`. Use the
dependencies of `cnnlens.service.deps` (StateDep, SettingsDep, DeadlineDep, read_image),
resolve the request once in a dependency (`cnnlens.service.requests`: the model looked up,
methods, params, layer and targets checked) and hand that to the budget and the worker:
`await state.run(request.model, each, work, cost=..., deadline=deadline)` (`each` from
`cnnlens.service.runtime.worker`).
"""

from __future__ import annotations

PUBLIC_ROUTERS = [
    "health",
    "metrics",
    "web",
]

V1_ROUTERS = [
    "models",
    "methods",
    "explain",
    "visualize",
    "compare",
    "audits",
    "audit_features",
    "audit_thumbnails",
]
