"""GET /guide: the documentation site that `make docs` builds (mkdocs), served as files under
its own Content-Security-Policy (security.GUIDE_POLICY: scripts from this origin only).

Before it is built, /guide answers 404 with the command that builds it."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from cnnlens.service.errors import error_response
from cnnlens.service.security import GUIDE_POLICY

GUIDE_DIRECTORY = Path(__file__).resolve().parent / "site"  # mkdocs.yml's site_dir
NOT_BUILT = (
    "the guide is not built here: run `make docs` (or `mkdocs build`) in the source tree, "
    "or set guide_dir (CNNLENS_GUIDE_DIR) to a built site; the README has the same guides"
)


class GuideFiles(StaticFiles):
    """The built site's files (index.html for a folder); a clear 404 while it is not built."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self.site = directory

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not (self.site / "index.html").is_file():
            return error_response(404, "guide_not_built", NOT_BUILT)
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = GUIDE_POLICY
        return response


def guide_files(directory: str | None) -> GuideFiles:
    return GuideFiles(Path(directory) if directory else GUIDE_DIRECTORY)
