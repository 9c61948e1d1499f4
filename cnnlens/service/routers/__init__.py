"""The app's routers, one module per resource, each exposing `router` (a FastAPI APIRouter).

To add a resource: write `routers/<name>.py` with `router = APIRouter(prefix="/v1", ...)` (or a
function `router()` building it when the app is created, as `visualize` does from the method
registry) and
add its module name to `V1_ROUTERS` (API-key protected) or `PUBLIC_ROUTERS`. Use the
dependencies of `cnnlens.service.deps` (StateDep, SettingsDep, DeadlineDep, read_image) and
run model work through `await state.run(model_name, each, work, deadline=deadline)` (`each` from
`cnnlens.service.engine`).
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
