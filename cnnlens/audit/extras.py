"""Optional extras an audit may need, checked before any work starts."""

from __future__ import annotations

import importlib

from cnnlens.errors import CnnlensError


class MissingExtraError(CnnlensError):
    """A feature that needs an optional dependency this installation lacks."""

    code = "missing_extra"
    status = 501


def require_ray() -> None:
    """Ray (with Ray Data) is importable, or a MissingExtraError naming the extra to install."""
    try:
        importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError as error:
        raise MissingExtraError(
            f"the Ray engine needs Ray, which is not installed ({error.msg}): "
            "pip install 'cnnlens[ray]'"
        ) from None
