"""Query compilation: a :class:`~datago.engine.query.Query` -> a SQLAlchemy boolean clause
over the datapoints of a page (see :func:`compile_query`; the semantics are described in
:mod:`datago.engine.query`)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import string
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from . import query as _query
from .db import fields, metadata_values, to_us
from .query import TEXT_OPERATORS, UNARY_OPERATORS, And, Condition, Not, Or, Query, depth_message, lookups_message
from .values import BUILTIN_FIELDS, INT64_MAX, INT64_MIN, QueryError, infer_type, to_utc

#: most operands of one SQL AND/OR: longer lists are split into parenthesized groups of at most
#: this many, so the expression is about FAN * log_FAN(n) deep instead of n (SQLite refuses
#: expressions deeper than 1000, and a flat OR of n terms is n deep)
FAN = 8


class SqlContext:
    """What a condition compiles against: the datapoints table (or alias), the metadata and
    fields tables, the dialect, the point in time (``as_of_us``; None: current values) and
    ``after_id``: when not None, the statement only considers datapoints with a larger id (the
    caller adds that bound; metadata conditions repeat it for the planner)."""

    def __init__(self, dp: Any, dialect: str, as_of_us: int | None = None, after_id: int | None = None) -> None:
        self.dp = dp
        self.dialect = dialect
        self.as_of_us = as_of_us
        self.after_id = after_id
        self.metadata_values = metadata_values
        self.fields = fields
        #: metadata lookups (EXISTS subqueries) compiled so far
        self.lookups = 0

    def current(self, m: Any) -> ColumnElement[bool]:
        """Rows of metadata alias ``m`` valid at the context's time."""
        if self.as_of_us is None:
            return m.c.valid_to.is_(None)
        return sa.and_(
            m.c.valid_from <= self.as_of_us,
            sa.or_(m.c.valid_to.is_(None), m.c.valid_to > self.as_of_us),
        )

    def strpos(self, haystack: Any, needle: Any) -> ColumnElement[bool]:
        """Case-sensitive substring test, the same on every backend."""
        if self.dialect == "sqlite":
            return sa.func.instr(haystack, needle) > 0
        if self.dialect == "postgresql":
            return sa.func.strpos(haystack, needle) > 0
        return haystack.contains(needle, autoescape=True)

    def ascii_lower(self, text: Any) -> Any:
        """``text`` with ASCII letters lowered, the same on every backend (SQLite's ``lower``
        only lowers ASCII; PostgreSQL's follows the locale, so it gets ``translate``)."""
        if self.dialect == "postgresql":
            return sa.func.translate(text, string.ascii_uppercase, string.ascii_lowercase)
        return sa.func.lower(text)


def builtin_column(ctx: SqlContext, name: str) -> Any:
    """The SQL expression of a builtin field (see :data:`~datago.engine.values.BUILTIN_FIELDS`)
    over the context's datapoints."""
    dp = ctx.dp
    if name == "datapoint_id":
        return dp.c.id
    if name == "short_edge":
        return sa.case((dp.c.width < dp.c.height, dp.c.width), else_=dp.c.height)
    if name == "pixel_count":
        return sa.cast(dp.c.width, sa.BigInteger) * dp.c.height
    if name == "created_at":
        return dp.c.created_at
    return dp.c[name]


def _number(value: Any) -> Any:
    """A numeric query value as a typed bound parameter: an int within 64 bits as BIGINT,
    anything else as DOUBLE (±inf beyond the float range), which every backend compares with
    any numeric column (a bind typed after an INTEGER column would overflow on PostgreSQL)."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return sa.bindparam(None, value, type_=sa.BigInteger)
    try:
        f = float(value)
    except OverflowError:
        f = math.inf if value > 0 else -math.inf
    return sa.bindparam(None, f, type_=sa.Double)


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "eq":
        return col == value
    if op == "ne":
        return col != value
    if op == "gt":
        return col > value
    if op == "ge":
        return col >= value
    if op == "lt":
        return col < value
    return col <= value


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _text_clause(ctx: SqlContext, col: Any, op: str, value: str) -> ColumnElement[bool]:
    """A :data:`TEXT_OPERATORS` condition on the str expression ``col``."""
    if op == "contains":
        return ctx.strpos(col, value)
    if op == "icontains":
        return ctx.strpos(ctx.ascii_lower(col), value.translate(_ASCII_LOWER))
    return ctx.strpos(sa.literal(",") + col + sa.literal(","), sa.literal("," + value + ","))


def _value_clause(ctx: SqlContext, m: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op in TEXT_OPERATORS:
        return _text_clause(ctx, m.c.value_str, op, value)
    vtype = infer_type(value)
    if vtype == "bool":
        return _compare(m.c.value_bool, op, bool(value))
    if vtype in ("int", "float"):
        v = _number(int(value) if vtype == "int" else float(value))
        return sa.or_(_compare(m.c.value_int, op, v), _compare(m.c.value_float, op, v))
    if vtype == "str":
        return _compare(m.c.value_str, op, value)
    if vtype == "datetime":
        return _compare(m.c.value_datetime, op, value)
    return _compare(m.c.value_blob_hash, op, hashlib.sha256(bytes(value)).hexdigest())


#: builtin fields holding str (the others are numbers; ``created_at`` also takes datetimes)
STR_BUILTIN_FIELDS = ("path", "format")


def _builtin_clause(ctx: SqlContext, c: Condition) -> ColumnElement[bool]:
    col = builtin_column(ctx, c.field)
    if c.op == "is_null" or (c.op == "eq" and c.value is None):
        return col.is_(None)
    if c.op == "is_not_null" or (c.op == "ne" and c.value is None):
        return col.is_not(None)
    # like metadata fields, a builtin field only matches values of its own type, and only
    # datapoints that have a value (so that NOT matches those without, e.g. no width)
    is_str = c.field in STR_BUILTIN_FIELDS
    if c.op in TEXT_OPERATORS:
        return sa.and_(col.is_not(None), _text_clause(ctx, col, c.op, c.value)) if is_str else sa.false()
    value = c.value
    if c.field == "created_at" and isinstance(value, _dt.datetime):
        value = to_us(to_utc(value))  # naive datetimes are UTC, as for metadata values
    vtype = infer_type(value)
    if is_str:
        return sa.and_(col.is_not(None), _compare(col, c.op, value)) if vtype == "str" else sa.false()
    if vtype not in ("int", "float"):
        return sa.false()
    return sa.and_(col.is_not(None), _compare(col, c.op, _number(value)))


class Parens(ColumnElement[bool]):
    """A boolean clause in parentheses that SQLAlchemy keeps (it flattens nested ANDs and ORs,
    and its own groupings with them, into one list that SQLite parses as a deep tree)."""

    inherit_cache = True
    type = sa.Boolean()
    _traverse_internals: ClassVar[list[tuple[str, Any]]] = [("clause", InternalTraversal.dp_clauseelement)]

    def __init__(self, clause: ColumnElement[bool]) -> None:
        self.clause = clause


@compiles(Parens)
def _compile_parens(element: Parens, compiler: Any, **kw: Any) -> str:
    return "(" + compiler.process(element.clause, **kw) + ")"


def balanced(op: Any, clauses: list[Any]) -> ColumnElement[bool]:
    """``op`` (``sa.and_`` or ``sa.or_``) of ``clauses`` as a tree of parenthesized groups of at
    most :data:`FAN` operands (the same truth value, an expression about FAN * log_FAN(n) deep)."""
    while len(clauses) > FAN:
        clauses = [Parens(op(*clauses[i : i + FAN])) for i in range(0, len(clauses), FAN)]
    return op(*clauses)


def height(q: Query) -> int:
    """The nesting depth of and/or/not under ``q`` (0 for a condition)."""
    if isinstance(q, (And, Or)):
        return 1 + max(height(c) for c in q.children)
    if isinstance(q, Not):
        return 1 + height(q.child)
    return 0


def _deepest_first(children: tuple[Query, ...]) -> list[Query]:
    """``children`` with the most deeply nested first (AND and OR do not depend on the order):
    SQLite's parser then descends into the nested parentheses of one operand with nothing pending
    on its stack (100 entries), instead of an operand and an operator per level."""
    if all(isinstance(c, Condition) for c in children):
        return list(children)
    return sorted(children, key=lambda c: -height(c))


def compile_query(q: Query, ctx: SqlContext, _depth: int = 0) -> ColumnElement[bool]:
    """Compile a query to a boolean SQL expression over ``ctx.dp``. Field names and values are
    bound parameters; metadata fields are found by name in the fields table of the datapoint's
    own datasource.

    Raises:
        QueryError: nesting deeper than :data:`~datago.engine.query.MAX_DEPTH`, more metadata
            lookups than :data:`~datago.engine.query.MAX_LOOKUPS`.
    """
    if _depth > _query.MAX_DEPTH:
        raise QueryError(depth_message())
    if isinstance(q, And):
        return balanced(sa.and_, [compile_query(c, ctx, _depth + 1) for c in _deepest_first(q.children)])
    if isinstance(q, Or):
        return balanced(sa.or_, _compile_or(tuple(_deepest_first(q.children)), ctx, _depth + 1))
    if isinstance(q, Not):
        if isinstance(q.child, Not):  # NOT NOT x is x (also for NULL), and one parser level less
            return compile_query(q.child.child, ctx, _depth + 2)
        return sa.not_(compile_query(q.child, ctx, _depth + 1))
    if not isinstance(q, Condition):
        raise TypeError(f"not a query: {type(q).__name__}")
    if q.field in BUILTIN_FIELDS:
        return _builtin_clause(ctx, q)
    op = _metadata_op(q)
    if op == "is_null":
        return sa.not_(_metadata_exists(ctx, q.field, [q]))
    return _metadata_exists(ctx, q.field, [q])


def _metadata_op(c: Condition) -> str:
    """The operator of a metadata condition, with ``== None`` / ``!= None`` as is_(not_)null."""
    if c.op in ("eq", "ne") and c.value is None:
        return "is_null" if c.op == "eq" else "is_not_null"
    return c.op


def _compile_or(children: tuple[Query, ...], ctx: SqlContext, depth: int) -> list[ColumnElement[bool]]:
    """The clauses of an OR, where the conditions on one metadata field share one EXISTS (``a``
    has a value matching X, or one matching Y: a value matching X or Y), as the lenient dataroom
    filters write them (``aesthetic >= "5" | aesthetic >= 5``): one index probe instead of
    several, and an EXISTS the planner can turn into a join, which it cannot under an OR."""

    def shared(c: Query) -> bool:  # a condition that is an EXISTS on a metadata field
        return isinstance(c, Condition) and c.field not in BUILTIN_FIELDS and _metadata_op(c) != "is_null"

    groups: dict[str, list[Condition]] = {}
    for c in children:
        if shared(c):
            groups.setdefault(c.field, []).append(c)  # type: ignore[attr-defined]
    out = []
    for c in children:
        if not shared(c):
            out.append(compile_query(c, ctx, depth))
        elif c is groups[c.field][0]:  # type: ignore[attr-defined]
            out.append(_metadata_exists(ctx, c.field, groups[c.field]))  # type: ignore[attr-defined]
    return out


def _metadata_exists(ctx: SqlContext, name: str, conds: list[Condition]) -> ColumnElement[bool]:
    """EXISTS a current value of metadata field ``name`` for the datapoint satisfying any of
    ``conds`` (conditions on that field; is_null/is_not_null ones need no value clause).

    Raises:
        QueryError: more lookups in ``ctx`` than :data:`~datago.engine.query.MAX_LOOKUPS`.
    """
    ctx.lookups += 1
    if ctx.lookups > _query.MAX_LOOKUPS:
        raise QueryError(lookups_message())
    m = ctx.metadata_values.alias()
    f = ctx.fields.alias()
    # the field ids are selected by name alone, in a subquery that does not depend on the
    # datapoint: a metadata value's field is always one of its datapoint's datasource (writes
    # create fields per datasource), so tying ``f.datasource_id`` to the datapoint adds nothing but
    # a correlation that PostgreSQL misestimates (it then gathers and sorts every match of the
    # condition for each page instead of walking the datapoints in cursor order)
    field_ids = sa.select(f.c.id).where(f.c.name == sa.bindparam(None, name, type_=sa.String))
    where = [m.c.datapoint_id == ctx.dp.c.id, m.c.field_id.in_(field_ids), ctx.current(m)]
    ops = [_metadata_op(c) for c in conds]
    if not any(op in UNARY_OPERATORS for op in ops):  # else any value will do
        where.append(balanced(sa.or_, [_value_clause(ctx, m, op, c.value) for op, c in zip(ops, conds, strict=True)]))
    if ctx.after_id is not None:
        # implied by the datapoint's own bound, but the planner does not carry a range across
        # the join: spelled out, a merge join starts the values' index scan at the cursor
        # instead of reading (or hashing) every value before it on each page
        where.append(m.c.datapoint_id > sa.bindparam(None, ctx.after_id, type_=sa.BigInteger))
    return sa.exists().select_from(m).where(*where)
