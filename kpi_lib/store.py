"""The account store: one DuckDB file per account.

Every entity's raw API JSON is kept by id (upsert) in ``raw``, with the number of the sync
that last wrote it (:meth:`Store.begin_sync`; a full sync drops what it did not write again,
see :mod:`kpi_lib.deletions`); typed tables are derived from it in the same transaction, so a reader never sees one without the other.  A writer killed
mid-transaction leaves the previous committed state (DuckDB's write-ahead log only holds
committed transactions).  Readers open the file read-only, so several notebooks can read at
once; a writer needs the file to itself.

Entities accepted by :meth:`Store.ingest` and the typed tables they feed:

============================  =========================================================
entity                        typed tables
============================  =========================================================
``account``                   ``account``
``users``                     ``users``
``pipelines``                 ``pipelines``, ``statuses``
``lead_custom_fields``        ``lead_custom_fields``
``leads``                     ``leads``, ``lead_contacts``, ``lead_companies``, ``custom_field_values``
``contacts``                  ``contacts``, ``custom_field_values``
``companies``                 ``companies``, ``custom_field_values``
``tasks``                     ``tasks``
``lead_notes``                ``calls`` (call_in / call_out notes on leads)
``contact_notes``             ``calls`` (call_in / call_out notes on contacts)
``events``                    ``events``
============================  =========================================================

All timestamps are Unix seconds (BIGINT), as in the API.  Every write to the typed tables gives
the data a new generation (``meta.data_generation``), so that anything derived from the data and
kept beside it (the KPIs' history facts) can tell whether it is still current.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import duckdb
import pandas as pd
import pyarrow as pa

from .errors import StoreError
from . import deletions
from .deletions import DELETIONS, LEAD_STATES, PARTY_STATES, RESTORES  # noqa: F401  (re-exported)
from .rows import (CF_ENTITY, COLLECTIONS, ENTITIES, TABLES, as_int, page_items,  # noqa: F401
                   typed_frame, typed_rows)

SCHEMA_VERSION = 1
#: The meta key of the data generation: a new value with every write to the typed tables.
GENERATION_KEY = "data_generation"

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def store_path(data_dir: str | Path, account: str) -> Path:
    """The file of ``account`` under ``data_dir``."""
    if not _NAME_RE.match(account):
        raise StoreError(f"account name {account!r} is not a plain name: use letters, digits, '.', '-' or '_'")
    return Path(data_dir) / f"{account}.duckdb"


def list_accounts(data_dir: str | Path) -> list[str]:
    """Accounts that have a store under ``data_dir``."""
    return sorted(p.stem for p in Path(data_dir).glob("*.duckdb"))


def resolve_account(data_dir: str | Path, account: str | None) -> str:
    """``account`` if given, else the only store under ``data_dir``."""
    if account:
        return account
    found = list_accounts(data_dir)
    if len(found) == 1:
        return found[0]
    if not found:
        raise StoreError(
            f"no account store in {data_dir}: run 'kpi-report demo' and pass --data-dir demo/data for the demo "
            "account, or 'kpi-report sync' for yours (or pass --data-dir with your folder)"
        )
    raise StoreError(f"several account stores in {data_dir} ({', '.join(found)}): choose one with --account")


def damaged(path: Path, exc: Exception) -> StoreError:
    """The error for a store file that cannot be read (cut short, or damaged): one line, the fix."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(f"the store {path} is damaged or cut short ({reason}): delete it and sync again with "
                      "'kpi-report sync --full', or rebuild the demo with 'kpi-report demo'")


def _create_file(path: Path) -> None:
    """Make an empty store at ``path`` whole, or leave the one another process made first.

    DuckDB writes a new file's header after creating it, so a second process opening the
    path in between reads a half-made file.  The file is made under a private name and
    linked into place, which fails when the path exists: a store appears complete or not at all.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # DuckDB creates the file itself
    try:
        duckdb.connect(tmp).close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first
    finally:
        for leftover in (tmp, tmp + ".wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)


#: Arrow types that DuckDB's own conversion gives as pandas' nullable dtypes when a value is missing.
_NULLABLE = {pa.bool_(): pd.BooleanDtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}


class Store:
    """One account's DuckDB file.

    Use :meth:`open`; as a context manager it closes itself.  Writes go through
    :meth:`ingest` (raw + typed, atomically) inside :meth:`transaction`.
    """

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.path = path
        self.con = con
        self.read_only = read_only
        self.sync_no: int | None = None  # set by begin_sync
        self._in_tx = False

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, data_dir: str | Path, account: str | None = None, *, read_only: bool = True,
             create: bool = False) -> "Store":
        """Open an account's store; ``create`` makes the file (and data dir) when missing."""
        data_dir = Path(data_dir)
        if create:
            if not account:
                raise StoreError("cannot create a store without an account name: pass --account")
            data_dir.mkdir(parents=True, exist_ok=True)
        account = resolve_account(data_dir, account)
        path = store_path(data_dir, account)
        if not path.exists() and not create:
            raise StoreError(
                f"no store for account {account!r} at {path}: run 'kpi-report demo' or 'kpi-report sync' first"
            )
        if create and not path.exists():
            _create_file(path)
        try:
            con = duckdb.connect(str(path), read_only=read_only and not create)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreError(
                    f"the store {path} is being written by another process (a sync or demo build): "
                    "wait for it to finish, then retry"
                ) from exc
            raise damaged(path, exc) from None
        store = cls(path, con, read_only and not create)
        if not store.read_only:
            store._ensure_schema()
        return store

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_schema(self) -> None:
        con = self.con
        con.execute("BEGIN")
        con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("CREATE TABLE IF NOT EXISTS raw (entity VARCHAR, id VARCHAR, updated_at BIGINT, body VARCHAR,"
                    " PRIMARY KEY (entity, id))")
        con.execute("ALTER TABLE raw ADD COLUMN IF NOT EXISTS sync_no BIGINT")  # the sync that last wrote it
        con.execute("CREATE TABLE IF NOT EXISTS restores (kind VARCHAR, id BIGINT, PRIMARY KEY (kind, id))")
        con.execute("CREATE TABLE IF NOT EXISTS sync_state (entity VARCHAR PRIMARY KEY, cursor BIGINT,"
                    " last_sync_at BIGINT, extra VARCHAR)")
        for table, cols in TABLES.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{c} {t}' for c, t in cols)})")
        con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """All writes inside commit together or not at all."""
        if self._in_tx:
            yield self
            return
        self.con.execute("BEGIN")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")
        finally:
            self._in_tx = False

    def ingest(self, entity: str, items: Iterable[Mapping[str, Any]]) -> int:
        """Upsert raw items of ``entity`` (API v4 shape) and their typed rows; returns the count.

        Events of deletions and restores (:mod:`kpi_lib.deletions`) are applied as they are written.
        """
        if entity not in ENTITIES:
            raise StoreError(f"unknown entity {entity!r}: use one of {', '.join(ENTITIES)}")
        if self.read_only:
            raise StoreError(f"the store {self.path} is open read-only")
        items = [dict(it) for it in items]
        if not items:
            return 0
        # last occurrence of an id wins within a batch
        items = list({str(it["id"]): it for it in items}.values())
        ids = [str(it["id"]) for it in items]
        raw = pd.DataFrame({
            "entity": entity,
            "id": ids,
            "updated_at": pd.array([as_int(it.get("updated_at", it.get("created_at"))) for it in items], dtype="Int64"),
            "body": [json.dumps(it, ensure_ascii=False, separators=(",", ":")) for it in items],
            "sync_no": pd.array([self.sync_no] * len(items), dtype="Int64"),
        })
        rows = typed_rows(entity, items)
        table, children = ENTITIES[entity]
        with self.transaction():
            con = self.con
            con.register("_batch_raw", raw)
            con.execute("INSERT OR REPLACE INTO raw SELECT entity, id, updated_at, body, sync_no FROM _batch_raw")
            con.unregister("_batch_raw")
            con.register("_batch_ids", pd.DataFrame({"id": ids}))
            old: dict = {}
            if entity == "events":
                old = dict(con.execute("SELECT id, seq FROM events WHERE id IN (SELECT id FROM _batch_ids)").fetchall())
                nxt = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchone()[0]
                for row in rows.get("events", []):
                    row["seq"] = old.get(row["id"])
                    if row["seq"] is None:
                        row["seq"], nxt = nxt, nxt + 1
                con.execute("DELETE FROM events WHERE id IN (SELECT id FROM _batch_ids)")
            elif entity in ("lead_notes", "contact_notes"):
                kind = "lead" if entity == "lead_notes" else "contact"
                con.execute("DELETE FROM calls WHERE entity_type = ? AND id IN "
                            "(SELECT CAST(id AS BIGINT) FROM _batch_ids)", [kind])
            else:
                con.execute(f"DELETE FROM {table} WHERE id IN (SELECT CAST(id AS BIGINT) FROM _batch_ids)")
                for child, key in children.items():
                    con.execute(f"DELETE FROM {child} WHERE {key} IN (SELECT CAST(id AS BIGINT) FROM _batch_ids)")
                if entity in CF_ENTITY:
                    con.execute("DELETE FROM custom_field_values WHERE entity_type = ? AND entity_id IN "
                                "(SELECT CAST(id AS BIGINT) FROM _batch_ids)", [CF_ENTITY[entity]])
            con.unregister("_batch_ids")
            self._insert(rows)
            if entity == "events":
                deletions.apply_events(self, rows.get("events", []), set(ids) - set(old))
            self.mark_changed()
        return len(items)

    def ingest_page(self, entity: str, payload: Mapping[str, Any] | None) -> int:
        """Upsert the items of one HAL page (``None`` for a 204 answer); returns the count."""
        return self.ingest(entity, page_items(entity, payload))

    def append_typed(self, entity: str, items: Iterable[Mapping[str, Any]]) -> int:
        """Append the typed rows of new items of ``entity``, keeping no raw body (a bulk load).

        For filling a fresh store fast (benchmarks at a million leads): no upsert, no raw
        JSON, no deletion events applied; events are numbered in the order given.
        """
        rows = typed_rows(entity, items)
        with self.transaction():
            nxt = self.con.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchall()[0][0]
            for k, row in enumerate(rows.get("events", [])):
                row["seq"] = nxt + k
            self._insert(rows)
            self.mark_changed()
        return sum(len(r) for r in rows.values())

    def _insert(self, rows: dict[str, list[dict]]) -> None:
        for name, table_rows in rows.items():
            self.con.register("_batch_rows", typed_frame(name, table_rows))
            self.con.execute(f"INSERT INTO {name} SELECT * FROM _batch_rows")
            self.con.unregister("_batch_rows")

    def begin_sync(self) -> int:
        """Number a new sync: the raw items it writes carry the number (see :meth:`drop_unseen`)."""
        with self.transaction():
            self.sync_no = int(self.get_meta("sync_no", 0)) + 1
            self.set_meta("sync_no", self.sync_no)
        return self.sync_no

    def drop_unseen(self, entity: str, before: int) -> int:
        """Take out the items of ``entity`` no sync has written since sync ``before`` began
        (after a full listing: they are gone from the account); returns their count."""
        with self.transaction():
            count = deletions.drop_unseen(self, entity, before)
            if count:
                self.mark_changed()
            return count

    def queued_restores(self) -> dict[str, list[int]]:
        """Restored contacts and companies to fetch again: ``{"contact": [ids], "company": [ids]}``."""
        out: dict[str, list[int]] = {}
        for kind, item_id in self.con.execute("SELECT kind, id FROM restores ORDER BY kind, id").fetchall():
            out.setdefault(kind, []).append(item_id)
        return out

    def clear_restores(self, queued: Mapping[str, Iterable[int]]) -> None:
        """Mark restores fetched (call in the transaction that writes what was fetched)."""
        with self.transaction():
            self.con.executemany("DELETE FROM restores WHERE kind = ? AND id = ?",
                                 [[kind, item_id] for kind, ids in queued.items() for item_id in ids])

    # -- sync state and meta -----------------------------------------------------------------
    def get_state(self, entity: str) -> dict[str, Any] | None:
        """The sync cursor of ``entity``: ``{cursor, last_sync_at, **extra}`` or None."""
        row = self.con.execute("SELECT cursor, last_sync_at, extra FROM sync_state WHERE entity = ?", [entity]).fetchone()
        if row is None:
            return None
        return {"cursor": row[0], "last_sync_at": row[1], **json.loads(row[2] or "{}")}

    def set_state(self, entity: str, cursor: int | None, **extra: Any) -> None:
        """Record ``entity``'s cursor and the time of this sync."""
        now = int(datetime.now(timezone.utc).timestamp())
        with self.transaction():
            self.con.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?, ?, ?)",
                             [entity, cursor, now, json.dumps(extra)])

    def mark_changed(self) -> None:
        """Give the data a new generation (every write to the typed tables does): what was derived
        from the data before, stamped with the old generation, no longer matches."""
        self.set_meta(GENERATION_KEY, uuid.uuid4().hex)

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, json.dumps(value)])

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return default if row is None else json.loads(row[0])

    def last_sync_at(self) -> datetime | None:
        """When the account was last synced or built (UTC), from ``meta.last_sync_at``."""
        value = self.get_meta("last_sync_at")
        return datetime.fromtimestamp(value, timezone.utc) if value else None

    def mark_synced(self, when: datetime | None = None) -> None:
        """Record the end of a complete sync or demo build."""
        when = when or datetime.now(timezone.utc)
        self.set_meta("last_sync_at", int(when.timestamp()))

    # -- reading ---------------------------------------------------------------------------
    def frame(self, table: str, columns: Iterable[str] | None = None, where: str | None = None) -> pd.DataFrame:
        """One typed table as a pandas frame (a deleted lead is a row marked ``is_deleted``).

        Rows come by id (events by time and ``seq``), ties in the order stored, with the dtypes of
        DuckDB's own conversion (a nullable integer or flag with a missing value as ``Int64``,
        ``Int32`` or ``boolean``), through Arrow: several times faster for a million leads.
        """
        sql = self._frame_sql(table, columns, where)
        try:
            self.con.complete()  # a result of execute() left on the connection is finished first
            arrow = self.con.sql(sql).to_arrow_table()
            if arrow.num_rows == 0:
                return self.con.execute(sql).df()
            frame = arrow.to_pandas()
            for name, values in zip(arrow.column_names, arrow.columns):
                if values.null_count == len(values) and pa.types.is_string(values.type):
                    frame[name] = self.con.execute(f"SELECT {name} FROM ({sql})").df()[name]  # DuckDB's own dtype
                elif values.null_count and values.type in _NULLABLE:
                    frame[name] = values.to_pandas(types_mapper=_NULLABLE.get)
            return frame
        except duckdb.IOException as exc:
            raise damaged(self.path, exc) from None

    def _frame_sql(self, table: str, columns: Iterable[str] | None = None, where: str | None = None) -> str:
        """The query of :meth:`frame`."""
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}: use one of {', '.join(TABLES)}")
        cols = list(columns) if columns else [c for c, _ in TABLES[table]]
        body = f" FROM {table} t" + (f" WHERE {where}" if where else "")
        if "id" in cols and table != "events":
            body += " ORDER BY t.id, t.rowid"
        elif table == "events":
            body += " ORDER BY t.created_at, t.seq, t.rowid"
        return f"SELECT {', '.join(cols)}{body}"

    def frames(self, tables: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
        """Several typed tables at once (all by default)."""
        return {name: self.frame(name) for name in (tables or TABLES)}

    def counts(self) -> dict[str, int]:
        """Rows per typed table."""
        return {name: self.con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES}

    def raw_items(self, entity: str) -> list[dict]:
        """Every raw item of ``entity`` as stored (ordered by id)."""
        rows = self.con.execute("SELECT body FROM raw WHERE entity = ? ORDER BY id", [entity]).fetchall()
        return [json.loads(r[0]) for r in rows]


def load_frames(data_dir: str | Path | None = None, account: str | None = None,
                tables: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """Open an account read-only and return its typed tables as pandas frames.

    Times stay amoCRM's Unix seconds (the epoch columns ``created_at``, ``updated_at``,
    ``closed_at``, ``complete_till``), ids are integers, and every ``entity_type`` is spelled
    the way amoCRM's URLs and tasks spell it: ``leads``, ``contacts``, ``companies``,
    ``tasks`` (the API's events and notes say ``lead``, ``contact``…; the frames do not).

    >>> frames = load_frames()              # the only store under data/
    >>> frames["leads"].head()
    """
    if data_dir is None:
        from .config import default_data_dir

        data_dir = default_data_dir()
    with Store.open(data_dir, account, read_only=True) as store:
        frames = store.frames(tables)
    for frame in frames.values():
        if "entity_type" in frame:
            frame["entity_type"] = frame["entity_type"].replace(ENTITY_PLURALS)
    return frames


#: The one spelling of entity types in :func:`load_frames`.
ENTITY_PLURALS = {"lead": "leads", "contact": "contacts", "company": "companies", "task": "tasks",
                  "customer": "customers"}
