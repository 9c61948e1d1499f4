"""Package plumbing: validation messages name where and what, lazy exports resolve once."""

from __future__ import annotations

import importlib

import pytest
from pydantic import BaseModel, Field, ValidationError, model_validator

from cnnlens.errors import InvalidParamsError, validation_problems


class _Inner(BaseModel):
    size: int = Field(ge=1)


class _Outer(BaseModel):
    inner: _Inner
    name: str = "x"

    @model_validator(mode="after")
    def _named(self) -> _Outer:
        if self.name == "bad":
            raise ValueError("the name is bad")
        return self


def _problems(data: object, whole: str = "params") -> str:
    with pytest.raises(ValidationError) as caught:
        _Outer.model_validate(data)
    return validation_problems(caught.value, whole)


def test_validation_problems_name_the_field_path_and_the_message() -> None:
    assert _problems({"inner": {"size": 0}}) == (
        "inner.size: Input should be greater than or equal to 1"
    )
    assert _problems({"inner": {"size": 1}, "name": "bad"}, "options") == (
        "options: Value error, the name is bad"
    )
    both = _problems({"inner": {}, "extra": 1, "name": 3})
    assert both.split("; ") == [
        "inner.size: Field required",
        "name: Input should be a valid string",
    ]


def test_compare_options_and_method_params_report_through_it() -> None:
    from cnnlens.compare.options import parse_options
    from cnnlens.methods.base import get_method, parse_params

    with pytest.raises(InvalidParamsError) as options:
        parse_options({"steps": 1})
    assert str(options.value) == (
        "invalid compare options: steps: Input should be greater than or equal to 2"
    )
    with pytest.raises(InvalidParamsError) as params:
        parse_params(get_method("smoothgrad"), {"samples": 0})
    assert str(params.value) == "smoothgrad: samples: Input should be greater than or equal to 1"


@pytest.mark.parametrize(
    ("package", "name", "home"),
    [
        ("cnnlens", "load_model", "cnnlens.models"),
        ("cnnlens.audit", "AuditStore", "cnnlens.audit.store"),
        ("cnnlens.client", "Client", "cnnlens.client.sync"),
        ("cnnlens.client", "ExplainResult", "cnnlens.client.results"),
    ],
)
def test_lazy_exports_come_from_their_home_and_stay(package: str, name: str, home: str) -> None:
    module = importlib.import_module(package)
    value = getattr(module, name)
    assert value is getattr(importlib.import_module(home), name)
    assert vars(module)[name] is value  # cached: the next lookup skips __getattr__


def test_unknown_names_are_attribute_errors() -> None:
    import cnnlens.client

    with pytest.raises(AttributeError, match="module 'cnnlens.client' has no attribute 'Nope'"):
        cnnlens.client.Nope  # noqa: B018
