"""Plain SQL for the statements of the hot batches (agency notices, broadcasts), where
building a Django query cost more than running it: profiled at about 0.4 ms of CPU per ORM
query, a dozen per batch, against 0.1 ms for the same statement written out. Portable
between SQLite and PostgreSQL; values come back as the driver gives them (no field
conversion: read ids, text and flags this way, and dates through Model.objects.raw)."""

from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    CharField,
    Field,
    ForeignKey,
    IntegerField,
    Model,
    TextField,
)
from django.db.models.fields import AutoFieldMixin


def in_list(values: Sequence[Any]) -> str:
    """The placeholders of `IN (...)` for these values."""
    return ", ".join(["%s"] * len(values))


def fetch_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


KEYS_PER_STATEMENT = 200  # SQLite bounds an expression's depth (1,000): one OR per key


def fetch_rows_by_keys(sql: str, term: str, keys: Sequence[Sequence[Any]]
                       ) -> list[tuple[Any, ...]]:
    """The rows of `sql` whose `{keys}` becomes `(term) OR (term) ...`, one term per key
    (its placeholders take the key's values), in statements of at most KEYS_PER_STATEMENT
    keys. An OR of keys, not a row-value IN: SQLite probes a composite index once per term
    for the former, and scans the whole table for the latter."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(keys), KEYS_PER_STATEMENT):
        chunk = keys[start:start + KEYS_PER_STATEMENT]
        rows += fetch_rows(sql.replace("{keys}", " OR ".join([f"({term})"] * len(chunk))),
                           [value for key in chunk for value in key])
    return rows


def bulk_insert(objs: Sequence[Model]) -> None:
    """INSERT new rows of one model and set their ids, as QuerySet.bulk_create does, but
    without assembling the statement field by field through the ORM's compiler (profiled:
    three quarters of bulk_create's CPU for a batch of chat messages). Defaults and
    auto_now(_add) are applied as a save would; values are adapted for the database by the
    field's own rules."""
    if not objs:
        return
    model = type(objs[0])
    if not connection.features.can_return_rows_from_bulk_insert:  # SQLite before 3.35
        model._default_manager.bulk_create(objs)
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    adapt = [_adapter(f) for f in fields]
    stamped = [f for f in fields if getattr(f, "auto_now", False)
               or getattr(f, "auto_now_add", False)]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    size = max(1, (connection.features.max_query_params or 100_000) // len(fields))
    for start in range(0, len(objs), size):
        chunk = objs[start:start + size]
        params: list[Any] = []
        for obj in chunk:
            for field in stamped:
                field.pre_save(obj, add=True)  # sets the attribute, as save() would
            params.extend(a(getattr(obj, f.attname)) for f, a in zip(fields, adapt, strict=True))
        ids = fetch_rows(
            f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns})"
            f" VALUES {', '.join([row] * len(chunk))}"
            f" RETURNING {connection.ops.quote_name(meta.pk.column)}", params)
        for obj, (pk,) in zip(chunk, ids, strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias


def _adapter(field: Field) -> Callable[[Any], Any]:  # type: ignore[type-arg]
    """How a value of this field goes to the database: as it is for numbers, text, flags and
    keys; through the field's rules for everything else (dates, JSON, ...)."""
    if isinstance(field, (CharField, TextField, IntegerField, BooleanField, ForeignKey)):
        return lambda value: value
    return lambda value: field.get_db_prep_save(value, connection)
