"""/docs: Swagger UI served from the package's own assets, so that it works offline.

ReDoc stays off: even its bundled build loads its logo from the vendor's CDN."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from cnnlens.html_safety import page_policy

# fastapi-offline ships Swagger UI 5 (it reads OpenAPI 3.1); only its static files are used.
ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/static/docs"


def install_offline_docs(app: FastAPI) -> None:
    """Serve /docs from same-origin assets; build the app with docs_url=None and
    redoc_url=None so that FastAPI's CDN pages are not registered."""
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-static")

    page = _with_policy(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=redirect_url,
        )
    )
    redirect = _with_policy(get_swagger_ui_oauth2_redirect_html())

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return page

    @app.get(redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return redirect


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    """The page with a Content-Security-Policy allowing its own assets and inline scripts."""
    html = bytes(page.body).decode("utf-8")
    page.headers["Content-Security-Policy"] = page_policy(
        html,
        script_src=["'self'"],
        style_src=["'self'"],
        img_src=["'self'", "data:"],
        connect_src=["'self'"],
    )
    return page
