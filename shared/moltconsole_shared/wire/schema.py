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
import enum
import types
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

T = TypeVar("T")


class WireFormatError(ValueError):
    """A message that does not fit its schema; the text names the field and what it must be."""


class WireSchema(Generic[T]):
    """The wire form of ``kind`` (a dataclass): read and checked, or written.

    ``name`` starts each error's field path (``record``, ``status``, ``log query``).
    ``omit_none`` leaves out fields that are None when writing (for foreign objects passed on,
    which should not gain keys their source never sent).
    """

    def __init__(self, kind: type[T], name: str, *, omit_none: bool = False) -> None:
        self.kind = kind
        self.name = name
        self.omit_none = omit_none
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
        return self._adapter.dump_python(value, mode="json", exclude_none=self.omit_none)

    def dump_json(self, value: T) -> bytes:
        """``value`` as JSON text, encoded in one pass."""
        return self._adapter.dump_json(value, exclude_none=self.omit_none)


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
    shown_loc, annotation = _walk(kind, loc)
    where = name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in shown_loc)
    kind_of_error = error["type"]
    value = error.get("input")
    if kind_of_error == "missing":
        return f"{where} is missing"
    if kind_of_error == "json_invalid":
        return f"{name} is not valid JSON ({(error.get('ctx') or {}).get('error', '')})"
    if kind_of_error in ("union_tag_invalid", "union_tag_not_found"):
        ctx = error.get("ctx") or {}
        tag = f"{where}.{str(ctx.get('discriminator', 'type')).strip(chr(39))}"
        if kind_of_error == "union_tag_not_found":
            return f"{tag} is missing"
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{tag} must be one of {expected}, not {ctx.get('tag')!r}"
    if kind_of_error in ("extra_forbidden", "unexpected_keyword_argument"):
        parent = _bare(_walk(kind, loc[:-1])[1])
        known = [f.name for f in dataclasses.fields(parent)] if dataclasses.is_dataclass(parent) else []
        return f"{where} is not a field of {name}" + (f"; send {', '.join(known)}" if known else "")
    nullable = _nullable(annotation)
    ctx = error.get("ctx") or {}
    if kind_of_error in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "?")
        words = {"greater_than_equal": "at least", "greater_than": "more than",
                 "less_than_equal": "at most", "less_than": "less than"}[kind_of_error]
        must = f"{words} {bound}" + (" or null" if nullable else "")
        return f"{where} must be {must}, not {_shown(value)}"
    if kind_of_error in ("literal_error", "enum"):
        bare = _bare(annotation)
        is_enum = isinstance(bare, type) and issubclass(bare, enum.Enum)
        choices = tuple(m.value for m in bare) if is_enum else get_args(bare)
        must = "one of " + ", ".join(str(c) or '""' for c in choices) if choices else str(error["msg"])
    elif kind_of_error in _MUST_BE:
        must = _MUST_BE[kind_of_error]
    else:
        return f"{where}: {str(error['msg']).lower()}, not {_shown(value)}"
    if nullable:
        must += " or null"
    return f"{where} must be {must}, not {_shown(value)}"


SHOWN_MAX = 60  # characters of a wrong value quoted in an error


def _shown(value: Any) -> str:
    """The wrong value for the message: its type for a container, else its repr (which escapes
    control characters, so a hostile value cannot drive the terminal), cut short."""
    if isinstance(value, dict | list | tuple):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"


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


def _walk(kind: Any, loc: tuple[int | str, ...]) -> tuple[list[int | str], Any]:
    """The path to show for ``loc`` inside ``kind`` and the declared type there (None where
    the path leaves the schema). The tag pydantic puts in the path of a union told apart by
    its ``type`` (``batch``) is no field: it is left out."""
    annotation = kind
    shown: list[int | str] = []
    for part in loc:
        if annotation is None:
            shown.append(part)
            continue
        bare = _bare(annotation)
        member = _tagged(bare, part)
        if member is not None:
            annotation = member
            continue
        shown.append(part)
        annotation = _step(bare, part)
    return shown, annotation


def _tagged(bare: Any, part: int | str) -> Any:
    """The member of the tagged union ``bare`` whose ``type`` is ``part``, else None."""
    if get_origin(bare) not in (Union, types.UnionType) or not isinstance(part, str):
        return None
    for member in get_args(bare):
        if dataclasses.is_dataclass(member) and get_args(get_type_hints(member).get("type")) == (part,):
            return member
    return None


def _step(bare: Any, part: int | str) -> Any:
    """The declared type of ``part`` (a field, an index, a key) inside ``bare``, or None."""
    origin = get_origin(bare)
    if dataclasses.is_dataclass(bare) and isinstance(part, str):
        return get_type_hints(bare, include_extras=True).get(part)
    if isinstance(bare, type) and issubclass(bare, BaseModel) and isinstance(part, str):
        found = [f for name, f in bare.model_fields.items() if part in (name, f.alias)]
        return found[0].annotation if found else None
    if origin in (list, tuple) and isinstance(part, int):
        return get_args(bare)[0]
    if origin is dict:
        return get_args(bare)[1]
    return None
