"""One schema per message, checked where it crosses the wire.

Every message is a plain dataclass in this package: the side that writes it builds it as any
object (no validation: the data is its own, and the gateway builds one per request), and the
side that reads it checks it with :class:`WireSchema`, pydantic's validator over the same
dataclass. Fields whose type must not be coerced on the wire are annotated with pydantic's
strict types (``StrictInt`` refuses ``1.5`` and ``true``, ``StrictBool`` refuses ``"yes"``), so
integer nano-dollars stay integers. Unknown keys are ignored: a newer backend may say more.

A message that does not fit raises :class:`WireFormatError`, whose text names the field and
says what it must be (``record.usage.input_tokens must be an integer, not 1.5``).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

T = TypeVar("T")


class WireFormatError(ValueError):
    """A message that does not fit its schema; the text names the field and what it must be."""


class WireSchema(Generic[T]):
    """The wire form of ``kind`` (a dataclass): read and checked, or written.

    ``name`` starts each error's field path (``record``, ``status``, ``log query``).
    """

    def __init__(self, kind: type[T], name: str) -> None:
        self.kind = kind
        self.name = name
        self._adapter: TypeAdapter[T] = TypeAdapter(kind)

    def read(self, data: Any) -> T:
        """``data`` (decoded JSON) as a ``kind``; WireFormatError names what does not fit."""
        try:
            return self._adapter.validate_python(data)
        except ValidationError as exc:
            raise WireFormatError(describe(exc, self.kind, self.name)) from None

    def read_json(self, raw: str | bytes) -> T:
        """JSON text as a ``kind``, decoded and checked in one pass."""
        try:
            return self._adapter.validate_json(raw)
        except ValidationError as exc:
            raise WireFormatError(describe(exc, self.kind, self.name)) from None

    def dump(self, value: T) -> Any:
        """``value`` as JSON-ready Python (dicts, lists, numbers, strings, None)."""
        return self._adapter.dump_python(value, mode="json")

    def dump_json(self, value: T) -> bytes:
        """``value`` as JSON text, encoded in one pass."""
        return self._adapter.dump_json(value)


# What each pydantic error type says the value must be.
_MUST_BE = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a JSON object",
    "dataclass_type": "a JSON object",
    "dataclass_exact_type": "a JSON object",
    "model_type": "a JSON object",
}


def describe(exc: ValidationError, kind: Any, name: str) -> str:
    """The first problem in ``exc`` as one sentence naming the field (and how many more)."""
    errors = exc.errors(include_url=False)
    text = _sentence(errors[0], kind, name)
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text


def _sentence(error: ErrorDetails, kind: Any, name: str) -> str:
    loc = error["loc"]
    where = name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    kind_of_error = error["type"]
    value = error.get("input")
    if kind_of_error == "missing":
        return f"{where} is missing"
    if kind_of_error == "json_invalid":
        return f"{name} is not valid JSON ({error.get('ctx', {}).get('error', '')})"
    annotation = _annotation(kind, loc)
    nullable = _nullable(annotation)
    if kind_of_error == "literal_error":
        choices = get_args(_bare(annotation))
        must = "one of " + ", ".join(str(c) for c in choices) if choices else str(error["msg"])
    elif kind_of_error in _MUST_BE:
        must = _MUST_BE[kind_of_error]
    else:
        return f"{where}: {str(error['msg']).lower()}, not {_shown(value)}"
    if nullable:
        must += " or null"
    return f"{where} must be {must}, not {_shown(value)}"


def _shown(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return type(value).__name__
    return repr(value)


def _bare(annotation: Any) -> Any:
    """``annotation`` without ``Annotated[...]`` and without ``| None``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return _bare(rest[0])
    return annotation


def _nullable(annotation: Any) -> bool:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _annotation(kind: Any, loc: tuple[int | str, ...]) -> Any:
    """The declared type at ``loc`` inside ``kind`` (None where the path leaves the schema)."""
    annotation = kind
    for part in loc:
        bare = _bare(annotation)
        origin = get_origin(bare)
        if dataclasses.is_dataclass(bare) and isinstance(part, str):
            annotation = get_type_hints(bare, include_extras=True).get(part)
        elif origin in (list, tuple) and isinstance(part, int):
            annotation = get_args(bare)[0]
        elif origin is dict:
            annotation = get_args(bare)[1]
        else:
            return None
        if annotation is None:
            return None
    return annotation

