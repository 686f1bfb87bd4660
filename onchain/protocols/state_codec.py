"""Adapters' kept state as bytes and back, so a store can keep it as opaque blobs and a book be
rebuilt later through the adapter's own exact math.

Generic over the adapters' plain frozen dataclasses (ints, strings, bools, tuples, dicts, nested
dataclasses): a value is written as compact JSON (a dataclass as the list of its fields, a dict
as its sorted items) then deflated. The same value always gives the same bytes, so "did this
account's state change since the stored one" is a byte comparison. Fields declared
`compare=False` (caches, discovery notes) are not part of a state and are left out."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any, cast

LEVEL = 6  # zlib: small rows matter more than microseconds here


def encode(value: Any) -> bytes:
    """`value` (a dataclass, or a list of them) as deterministic deflated JSON."""
    text = json.dumps(_plain(value), separators=(",", ":"))
    return zlib.compress(text.encode(), LEVEL)


def decode(data: bytes, kind: Any) -> Any:
    """The value `encode` wrote, rebuilt as `kind` (e.g. `AaveMarketState`, `list[X]`)."""
    return _decoder(kind)(json.loads(zlib.decompress(data)))


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [_plain(getattr(value, f.name)) for f in _fields(type(value))]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return sorted(([_plain(k), _plain(v)] for k, v in value.items()), key=_sort_key)
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=_sort_key)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(f"cannot encode a {type(value).__name__} in a kept state")


def _sort_key(item: Any) -> str:
    return json.dumps(item, separators=(",", ":"))


@cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.compare)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _decoder(kind: Any) -> Callable[[Any], Any]:
    """A function rebuilding `kind` from its decoded JSON, made once per type: the type
    hints are walked here, not again at every node of every value (a market state has
    thousands)."""
    if kind is Any:
        return _same
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"cannot decode the union {kind}")
        one = _decoder(inner[0])
        return lambda data: None if data is None else one(data)
    if origin is dict:
        key, value = _decoder(args[0]), _decoder(args[1])
        return lambda data: {key(k): value(v) for k, v in data}
    if origin in (set, frozenset):
        item = _decoder(args[0])
        return lambda data: origin(item(v) for v in data)
    if origin is list:
        item = _decoder(args[0])
        return lambda data: [item(v) for v in data]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])
            return lambda data: tuple(item(v) for v in data)
        items = tuple(_decoder(a) for a in args)
        return lambda data: tuple(f(v) for f, v in zip(items, data, strict=True))
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _dataclass_decoder(kind)
    if kind is bytes:
        return bytes.fromhex
    if kind in (int, str, bool, float):
        return cast(Callable[[Any], Any], kind)
    raise TypeError(f"cannot decode a {kind} in a kept state")


def _dataclass_decoder(kind: type) -> Callable[[Any], Any]:
    """A dataclass from the list of its compared fields, by name."""
    hints = _hints(kind)
    names = tuple(f.name for f in _fields(kind))
    parts = tuple(_decoder(hints[n]) for n in names)

    def build(data: Any) -> Any:
        return kind(**{n: f(v) for n, f, v in zip(names, parts, data, strict=True)})

    return build


def _same(data: Any) -> Any:
    return data
