"""Form fields a route does not take are refused, on every multipart or url-encoded route: a
misspelt option (`methd=`) or a field from another API (`source=file:///etc`) is a 422 that
names it, never a request run with the defaults."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from cnnlens.errors import InvalidParamsError, shown

_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


async def refuse_unknown_form_fields(request: Request) -> None:
    """A dependency of every API route: 422 `unknown_field` for a form field that the route's
    parameters (its own and its dependencies', Form models' fields included) do not name."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    if not request.headers.get("content-type", "").startswith(_FORMS):
        return
    known = route_form_fields(route)
    form = await request.form()  # parsed once: the route reads the same form
    unknown = [name for name in dict.fromkeys(form.keys()) if name not in known]
    if unknown:
        names = ", ".join(shown(name) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        taken = ", ".join(sorted(known)) or "none"
        raise InvalidParamsError(
            f"unknown form field {names}{more}; this route takes: {taken}",
            code="unknown_field",
        )


_KNOWN: dict[int, tuple[APIRoute, frozenset[str]]] = {}  # by id: routes are unhashable


def route_form_fields(route: APIRoute) -> frozenset[str]:
    """The form field names a route reads (worked out once per route)."""
    known = _KNOWN.get(id(route))
    if known is None or known[0] is not route:
        known = _KNOWN[id(route)] = (route, frozenset(_body_names(route.dependant)))
    return known[1]


def _body_names(dependant: Dependant) -> set[str]:
    names: set[str] = set()
    for field in dependant.body_params:
        annotation = field.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= {info.alias or name for name, info in annotation.model_fields.items()}
        else:
            names.add(field.alias)
    for sub in dependant.dependencies:
        names |= _body_names(sub)
    return names
