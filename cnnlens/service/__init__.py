"""The REST service: `create_app(settings)` builds the FastAPI app, `serve(host, port, config)`
runs it (what `cnnlens serve` and `python -m cnnlens.service` call)."""

from cnnlens.service.app import create_app
from cnnlens.service.server import serve
from cnnlens.service.settings import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings", "serve"]
