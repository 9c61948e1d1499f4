"""GET and HEAD /: the web page (cnnlens/service/web/index.html), when it is installed."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from cnnlens.service.errors import ServiceError
from cnnlens.service.security import PAGE_POLICY

WEB_DIRECTORY = Path(__file__).resolve().parent.parent / "web"

router = APIRouter(tags=["web"])


@router.api_route(
    "/",
    methods=["GET", "HEAD"],
    response_class=FileResponse,
    include_in_schema=False,
)
def index() -> FileResponse:
    page = WEB_DIRECTORY / "index.html"
    if not page.is_file():
        raise ServiceError("the web page is not installed", code="not_found", status=404)
    return FileResponse(
        page,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": PAGE_POLICY},
    )
