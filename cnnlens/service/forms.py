"""Parsing and validating the text fields of the v1 requests, before any work is queued."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request

from cnnlens.api.forms import DEFAULT_METHOD, json_object, split_list
from cnnlens.errors import InvalidParamsError, TargetError, shown
from cnnlens.methods.base import Method, MethodParams, get_method, parse_params
from cnnlens.models.loaded import LoadedModel
from cnnlens.targets import class_index

_MAX_METHODS = 32
_MAX_TARGET_CHARS = 200


def single_valued_fields(
    repeatable: Sequence[str],
) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A route dependency: every form field but `repeatable` ones may come once. A second
    `image`, `model` or `params` is refused (422 duplicate_field), not silently replaced."""
    allowed = frozenset(repeatable)

    async def check(request: Request) -> None:
        kind = request.headers.get("content-type", "")
        if not kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            return  # not a form: the route's own validation answers
        form = await request.form()  # parsed once: the route's fields read the same form
        for name in dict.fromkeys(form.keys()):
            count = len(form.getlist(name))
            if count > 1 and name not in allowed:
                raise InvalidParamsError(
                    f"the form field {name[:64]!r} was given {count} times; give it once",
                    code="duplicate_field",
                )

    return check


def parse_methods(values: Sequence[str] | None, default: str = DEFAULT_METHOD) -> list[Method]:
    names = split_list(values) or [default]
    if len(names) > _MAX_METHODS:
        raise InvalidParamsError(f"at most {_MAX_METHODS} methods per request")
    return [get_method(name) for name in names]  # 422 unknown_method


def parse_targets(values: Sequence[str] | None, model: LoadedModel, limit: int) -> list[int]:
    """Class indices or labels (each field one target) -> distinct class indices."""
    texts = [value for value in values or () if value.strip()]
    if len(texts) > limit:
        raise TargetError(f"at most {limit} targets per request, got {len(texts)}")
    return list(dict.fromkeys(parse_class(text, model) for text in texts))


def parse_class(value: int | str, model: LoadedModel) -> int:
    """One class index or label -> its index (see `class_index`); a 422 for anything else."""
    if isinstance(value, str) and len(value) > _MAX_TARGET_CHARS:
        raise TargetError(f"a target is at most {_MAX_TARGET_CHARS} characters")
    if isinstance(value, str) and value != value.strip():
        raise TargetError(f"target {shown(value)} has leading or trailing spaces")
    return class_index(value, model.categories, len(model.categories) or 1000)


def layer_field(value: str | None) -> str | None:
    """The `layer` field's name (None when empty); `plan_run` checks it against the model."""
    if value is None or not value.strip():
        return None
    return value.strip()


def parse_params_by_method(text: str | None, methods: Sequence[Method]) -> dict[str, MethodParams]:
    """`params` = a JSON object keyed by method name -> validated params for each method.

    Keys must be known methods; params for a method not requested are validated too (so a
    typo is an error) but unused.
    """
    raw = json_object(text, "params")
    parsed: dict[str, MethodParams] = {}
    for name, value in raw.items():
        method = get_method(name)  # 422 for a key that is not a method
        if not isinstance(value, dict):
            raise InvalidParamsError(f"params for {name!r} must be a JSON object")
        parsed[name] = parse_params(method, value)
    return {m.name: parsed.get(m.name) or parse_params(m, {}) for m in methods}


def parse_method_params(text: str | None, method: Method) -> MethodParams:
    """`params` for a single-method route: the method's own fields, or {method: {...}}."""
    raw = json_object(text, "params")
    if set(raw) == {method.name} and isinstance(raw[method.name], dict):
        raw = raw[method.name]
    return parse_params(method, raw)


def params_key(params: MethodParams) -> str:
    """Canonical JSON of validated params: equal settings batch together."""
    return params.model_dump_json()
