"""Plain SQL for the statements of the hot batches (agency notices, broadcasts), where
building a Django query cost more than running it: profiled at about 0.4 ms of CPU per ORM
query, a dozen per batch, against 0.1 ms for the same statement written out. Portable
between SQLite and PostgreSQL; values come back as the driver gives them (no field
conversion: read ids, text and flags this way, and dates through Model.objects.raw)."""

from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import (
    BooleanField,
    CharField,
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


def fetch_rows_by_keys(sql: str, columns: Sequence[tuple[str, str]],
                       keys: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The rows of `sql` whose `{keys}` becomes the condition "`columns` equal one of the
    keys". `columns` are (expression, PostgreSQL type) pairs; a key holds one value per column.

    On PostgreSQL, `(columns) IN (SELECT * FROM unnest(one array per column))`: one short
    statement whatever the count. A statement with a placeholder per value costs the driver
    time per placeholder to merge (profiled: most of the chat writer's CPU in large batches)
    and the server a new plan for every count. On SQLite, `(col = ? AND ...) OR ...` in
    statements of at most KEYS_PER_STATEMENT keys: SQLite probes a composite index once per
    term for that, and scans the whole table for a row-value IN."""
    if not keys:
        return []
    if connection.vendor == "postgresql":
        names = ", ".join(name for name, _ in columns)
        table = _unnest([db_type for _, db_type in columns])
        return _fetch_rows_with_arrays(
            sql.replace("{keys}", f"({names}) IN (SELECT * FROM {table})"),
            [list(values) for values in zip(*keys, strict=True)])
    term = "(" + " AND ".join(f"{name} = %s" for name, _ in columns) + ")"
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(keys), KEYS_PER_STATEMENT):
        chunk = keys[start:start + KEYS_PER_STATEMENT]
        rows += fetch_rows(sql.replace("{keys}", " OR ".join([term] * len(chunk))),
                           [value for key in chunk for value in key])
    return rows


def _unnest(db_types: Sequence[str]) -> str:
    """PostgreSQL's table of one array parameter per column, of these types (the parameters
    of _fetch_rows_with_arrays)."""
    return f"unnest({', '.join(f'%b::{db_type}[]' for db_type in db_types)})"


def _fetch_rows_with_arrays(sql: str, arrays: Sequence[list[Any]]) -> list[tuple[Any, ...]]:
    """Run an unnest statement on PostgreSQL with its arrays bound by the server, in binary.
    Django's cursor binds on the client: it quotes every value into the statement's text,
    which cost more CPU than the rest of a chat batch's statements (measured: 210 against
    75 µs for 40 rows of four columns). In the caller's transaction; errors become Django's
    (IntegrityError, DataError), as from Django's cursor. The statement's text does not
    change with the count, so the driver prepares it after a few runs."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, arrays)
        return cursor.fetchall()


def bulk_insert(objs: Sequence[Model]) -> None:
    """INSERT new rows of one model and set their ids, as QuerySet.bulk_create does, but
    without assembling the statement field by field through the ORM's compiler (profiled:
    three quarters of bulk_create's CPU for a batch of chat messages). Defaults and
    auto_now(_add) are applied as a save would; values are adapted for the database by the
    field's own rules. On PostgreSQL the rows go as one array per column through unnest (as
    Django's own bulk_create does there): a statement with a placeholder per value cost the
    driver more CPU to merge than the rest of the chat writer's batch together."""
    if not objs:
        return
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of `connection` looks it up again
    model = type(objs[0])
    if not db.features.can_return_rows_from_bulk_insert:  # SQLite before 3.35
        model._default_manager.bulk_create(objs)
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objs:
                field.pre_save(obj, add=True)  # sets the attribute, as save() would
    columns = []  # one list of values per field, ready for the database
    for field in fields:
        values = [getattr(obj, field.attname) for obj in objs]
        if not isinstance(field, _TAKEN_AS_THEY_ARE):
            values = [field.get_db_prep_save(value, db) for value in values]
        columns.append(values)
    insert = (f"INSERT INTO {db.ops.quote_name(meta.db_table)}"
              f" ({', '.join(db.ops.quote_name(f.column) for f in fields)})")
    returning = f" RETURNING {db.ops.quote_name(meta.pk.column)}"
    if db.vendor == "postgresql":
        # The type without its size (varchar, not varchar(64)): nothing is cut to fit.
        table = _unnest([str(f.db_type(db)).split("(")[0] for f in fields])
        ids = _fetch_rows_with_arrays(f"{insert} SELECT * FROM {table}{returning}", columns)
    else:
        rows = list(zip(*columns, strict=True))
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        size = max(1, (db.features.max_query_params or 100_000) // len(fields))
        ids = []
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            ids += fetch_rows(f"{insert} VALUES {', '.join([row] * len(chunk))}{returning}",
                              [value for values in chunk for value in values])
    for obj, (pk,) in zip(objs, ids, strict=True):  # RETURNING gives the rows in order
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = db.alias


# Values of these fields go to the database as they are; the others through the field's
# rules (dates, JSON, ...).
_TAKEN_AS_THEY_ARE = (CharField, TextField, IntegerField, BooleanField, ForeignKey)
