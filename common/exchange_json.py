"""Typed reading of an exchange's JSON answers (pydantic): a malformed or missing number is an error, never 0.

Numbers are read as Decimal from the JSON text itself (a JSON number is never rounded through float); NaN and
infinities are refused. ``parse`` raises MalformedResponse with a short message that names the offending field
(e.g. ``order.filled_size: Input should be a valid decimal (got 'abc')``); callers turn it into their own
error class."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ExchangeDecimal = Annotated[Decimal, Field(allow_inf_nan=False)]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]

Model = TypeVar("Model", bound=BaseModel)
MAX_SHOWN_INPUT = 40
MAX_SHOWN_ERRORS = 3


class ExchangeModel(BaseModel):
    """Base of the response models: unknown fields are ignored, values are immutable."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class MalformedResponse(ValueError):
    pass


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_INPUT else text[: MAX_SHOWN_INPUT - 3] + "..."


def describe(error: ValidationError) -> str:
    """The first few problems as ``field.path: message (got value)``, on one line."""
    parts = []
    for problem in error.errors()[:MAX_SHOWN_ERRORS]:
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        got = "" if problem["type"] == "missing" else f" (got {_shown(problem.get('input'))})"
        parts.append(f"{where}: {problem['msg']}{got}")
    more = error.error_count() - MAX_SHOWN_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse(model: type[Model], content: bytes | str) -> Model:
    """``content`` (a JSON document) as ``model``; MalformedResponse when it is not JSON or does not fit."""
    try:
        data = json.loads(content, parse_float=Decimal)
    except ValueError:
        raise MalformedResponse("body is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MalformedResponse(describe(exc)) from None
