"""Query expressions: a small tree of conditions and its JSON form (compiled to SQL by
:mod:`datago.engine.sql`).

Build conditions from a datasource (``ds["score"] > 0.5``) or standalone with :class:`Field`
(``Field("score") > 0.5``), combine them with ``&``, ``|`` and ``~``.

JSON form (:meth:`Query.to_dict`)::

    {"field": "score", "op": "gt", "value": 0.5}
    {"and": [q, ...]}   {"or": [q, ...]}   {"not": q}

Operators: ``eq ne gt ge lt le`` (values int, float, bool, str, datetime; ``eq``/``ne`` also bytes,
compared by sha256), ``contains`` (substring, case-sensitive, str fields), ``icontains`` (the same,
ignoring the case of ASCII letters), ``has_tag`` (exact item of a comma-separated str field such as
``tags``), ``is_null`` and ``is_not_null`` (no value).
Datetimes are written ``{"$datetime": "2024-01-01T00:00:00+00:00"}``.

Semantics: a comparison matches datapoints that *have* a value for the field which satisfies
it (``ne`` does not match datapoints without the field; ``~(f == v)`` does). Values compare
against the column of their own type (an int also matches float fields), so a comparison with a
value of the wrong type matches nothing. Ints beyond 64 bits compare as floats. NaN and str
values with NUL characters are refused (``ValueError``): backends disagree on them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .values import (
    QueryError,
    check_field_name,
    decode_json,
    encode_json,
    infer_type,
)

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
TEXT_OPERATORS = ("contains", "icontains", "has_tag")
OPERATORS = (*COMPARISONS, *TEXT_OPERATORS, "is_null", "is_not_null")
UNARY_OPERATORS = ("is_null", "is_not_null")
#: deepest nesting of and/or/not a query may have (the root is depth 0; every query within the
#: limits compiles on SQLite, whose parser stack holds 100 entries)
MAX_DEPTH = 32
#: most conditions (leaves) a query may have: SQLite cannot compile much larger ones, and each
#: metadata condition is a subquery the database plans and runs for every datapoint
MAX_CONDITIONS = 256
#: most metadata lookups (one subquery each: a condition on a metadata field, where those ORed on
#: one field share one) a query may need: PostgreSQL plans n of them ANDed in time growing
#: about 10x per doubling (0.3 s for 32, 3 s for 64, 37 s for 128 on an empty database)
MAX_LOOKUPS = 32


class Query:
    """Base class of query expressions. Combine with ``&`` (and), ``|`` (or), ``~`` (not)."""

    def __and__(self, other: Query) -> Query:
        """Both conditions (``other`` may be a datasource view: its query)."""
        return And.of(self, _as_query(other))

    def __or__(self, other: Query) -> Query:
        """Either condition (``other`` may be a datasource view: its query)."""
        return Or.of(self, _as_query(other))

    def __invert__(self) -> Query:
        """The negation (``~~q`` is ``q``)."""
        if isinstance(self, Not):
            return self.child
        return Not(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible form (see module docstring)."""
        raise NotImplementedError

    def to_json(self) -> str:
        """The JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @staticmethod
    def from_dict(data: Any, _depth: int = 0, _leaves: list[int] | None = None) -> Query:
        """Parse the JSON form.

        Raises:
            QueryError: nesting deeper than :data:`MAX_DEPTH` or more than
                :data:`MAX_CONDITIONS` conditions (a ValueError; the parse stops there).
            ValueError: malformed query (unknown key or operator, bad value).
        """
        if _leaves is None:
            _leaves = [0]
        if _depth > MAX_DEPTH:
            raise QueryError(depth_message())
        if not isinstance(data, dict):
            raise ValueError(f"a query is a JSON object, got {type(data).__name__}")
        keys = set(data)
        if keys == {"and"} or keys == {"or"}:
            key = next(iter(keys))
            items = data[key]
            if not isinstance(items, list) or not items:
                raise ValueError(f'"{key}" takes a non-empty list of queries')
            if len(items) > MAX_CONDITIONS:
                raise QueryError(size_message(len(items)))
            children = tuple(Query.from_dict(c, _depth + 1, _leaves) for c in items)
            return And(children) if key == "and" else Or(children)
        if keys == {"not"}:
            return Not(Query.from_dict(data["not"], _depth + 1, _leaves))
        if keys in ({"field", "op"}, {"field", "op", "value"}):
            _leaves[0] += 1
            if _leaves[0] > MAX_CONDITIONS:
                raise QueryError(size_message(None))
            op = data["op"]
            if op not in OPERATORS:
                raise ValueError(f"unknown operator {op!r} (known: {', '.join(OPERATORS)})")
            try:
                name = check_field_name(data["field"])
            except TypeError as e:
                raise ValueError(str(e)) from e
            value = decode_json(data.get("value"))
            return Condition(name, op, value)
        raise ValueError(f"unrecognized query object with keys {sorted(keys)}")

    @staticmethod
    def from_json(text: str | bytes) -> Query:
        """Parse the JSON text form.

        Raises:
            ValueError: invalid JSON or query.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid query JSON: {e}") from e
        except RecursionError:
            raise QueryError(depth_message()) from None
        return Query.from_dict(data)


def depth_message() -> str:
    """The message of a query nested deeper than :data:`MAX_DEPTH`."""
    return f"query nested deeper than {MAX_DEPTH} levels of and/or/not, the limit"


def size_message(n: int | None) -> str:
    """The message of a query with ``n`` conditions (None: more than the limit, not all
    counted) over :data:`MAX_CONDITIONS`."""
    what = f"more than {MAX_CONDITIONS} conditions" if n is None else f"{n} conditions"
    return f"query has {what}; the limit is {MAX_CONDITIONS}: split it into several queries"


def lookups_message() -> str:
    """The message of a query that needs more than :data:`MAX_LOOKUPS` metadata lookups."""
    return (
        f"query needs more than {MAX_LOOKUPS} metadata lookups (conditions on metadata fields; "
        "those ORed on one field count once), the limit: split it into several queries"
    )


def check_limits(q: Query) -> None:
    """Check a query against :data:`MAX_DEPTH` and :data:`MAX_CONDITIONS` (without recursion:
    a query built in Python can be of any shape).

    Raises:
        QueryError: over a limit.
    """
    leaves = 0
    stack: list[tuple[Query, int]] = [(q, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise QueryError(depth_message())
        if isinstance(node, _Compound):
            stack.extend((c, depth + 1) for c in node.children)
        elif isinstance(node, Not):
            stack.append((node.child, depth + 1))
        else:
            leaves += 1
    if leaves > MAX_CONDITIONS:
        raise QueryError(size_message(leaves))


def _as_query(other: Any) -> Query:
    if isinstance(other, Query):
        return other
    q = getattr(other, "query", None)
    if isinstance(q, Query):
        return q
    raise TypeError(f"cannot combine a query with {type(other).__name__}")


@dataclass(frozen=True)
class Condition(Query):
    """``field op value``; see the module docstring for operators.

    Raises:
        ValueError: an invalid field name (empty, over 255 characters, NUL), unknown operator,
            a missing value, NaN, a str with NUL, a tag with a comma.
        TypeError: a field name that is not a str, a value of no metadata type, or of a type
            the operator does not take.
    """

    field: str
    op: str
    value: Any = None

    def __post_init__(self) -> None:
        check_field_name(self.field)  # e.g. a NUL, which PostgreSQL refuses even as a parameter
        if self.op not in OPERATORS:
            raise ValueError(f"unknown operator {self.op!r}")
        if self.op in UNARY_OPERATORS:
            return
        if self.value is None:
            if self.op not in ("eq", "ne"):
                raise ValueError(f"operator {self.op} needs a value")
            return
        vtype = infer_type(self.value)
        if self.op in TEXT_OPERATORS and vtype != "str":
            raise TypeError(f"{self.op} takes a str, got {vtype}")
        if vtype == "bytes" and self.op not in ("eq", "ne"):
            raise TypeError("bytes values only support == and !=")
        if self.op == "has_tag" and "," in self.value:
            raise ValueError("a tag cannot contain a comma")
        if vtype == "float" and math.isnan(self.value):
            raise ValueError("NaN matches nothing; use is_null() for missing values")
        if vtype == "str" and "\x00" in self.value:
            raise ValueError("str values cannot contain NUL characters")

    def to_dict(self) -> dict[str, Any]:
        """``{"field", "op"[, "value"]}`` (see the module docstring)."""
        d: dict[str, Any] = {"field": self.field, "op": self.op}
        if self.op not in UNARY_OPERATORS:
            d["value"] = encode_json(self.value)
        return d


@dataclass(frozen=True)
class _Compound(Query):
    """A query over several children (:class:`And`, :class:`Or`)."""

    children: tuple[Query, ...]
    _key = ""

    @classmethod
    def of(cls, *items: Query) -> Query:
        """The combination of ``items`` with nested ones of the same kind flattened; a single
        item is returned as is."""
        flat: list[Query] = []
        for q in items:
            flat.extend(q.children if isinstance(q, cls) else (q,))
        return flat[0] if len(flat) == 1 else cls(tuple(flat))

    def to_dict(self) -> dict[str, Any]:
        """``{"and" | "or": [children]}``."""
        return {self._key: [c.to_dict() for c in self.children]}


@dataclass(frozen=True)
class And(_Compound):
    """All children match."""

    _key = "and"


@dataclass(frozen=True)
class Or(_Compound):
    """Any child matches."""

    _key = "or"


@dataclass(frozen=True)
class Not(Query):
    """The child does not match."""

    child: Query

    def to_dict(self) -> dict[str, Any]:
        """``{"not": child}``."""
        return {"not": self.child.to_dict()}


class Field:
    """A field to build conditions on: ``Field("score") >= 0.5``, ``Field("caption").contains("dog")``.

    Args:
        name: a metadata field or a builtin one (``path size width height format created_at
            datapoint_id short_edge pixel_count``).
    """

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        self.name = check_field_name(name)

    def _make(self, op: str, value: Any = None) -> Any:
        return Condition(self.name, op, value)

    def __eq__(self, value: Any) -> Any:  # type: ignore[override]
        return self._make("eq", value)

    def __ne__(self, value: Any) -> Any:  # type: ignore[override]
        return self._make("ne", value)

    def __gt__(self, value: Any) -> Any:
        return self._make("gt", value)

    def __ge__(self, value: Any) -> Any:
        return self._make("ge", value)

    def __lt__(self, value: Any) -> Any:
        return self._make("lt", value)

    def __le__(self, value: Any) -> Any:
        return self._make("le", value)

    def contains(self, text: str) -> Any:
        """Substring match (case-sensitive) on a str field."""
        return self._make("contains", text)

    def icontains(self, text: str) -> Any:
        """Substring match ignoring the case of ASCII letters, on a str field."""
        return self._make("icontains", text)

    def has_tag(self, tag: str) -> Any:
        """``tag`` is one of the comma-separated items of the str field."""
        return self._make("has_tag", tag)

    def is_null(self) -> Any:
        """The datapoint has no value for this field."""
        return self._make("is_null")

    def is_not_null(self) -> Any:
        """The datapoint has a value for this field."""
        return self._make("is_not_null")

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def conditions(items: Iterable[Query]) -> Query | None:
    """AND of the given queries (None when empty)."""
    items = list(items)
    return And.of(*items) if items else None
