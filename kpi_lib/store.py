"""The account store: one DuckDB file per account.

Every entity's raw API JSON is kept by id (upsert) in ``raw``; typed tables are derived from
it in the same transaction, so a reader never sees one without the other.  A writer killed
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

All timestamps are Unix seconds (BIGINT), as in the API.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import duckdb
import pandas as pd

from .errors import StoreError

SCHEMA_VERSION = 1

#: Typed tables: name -> columns (name, DuckDB type).
TABLES: dict[str, list[tuple[str, str]]] = {
    "account": [("id", "BIGINT"), ("name", "VARCHAR"), ("subdomain", "VARCHAR"), ("timezone", "VARCHAR"),
                ("currency", "VARCHAR"), ("country", "VARCHAR")],
    "users": [("id", "BIGINT"), ("name", "VARCHAR"), ("email", "VARCHAR"), ("lang", "VARCHAR"),
              ("is_admin", "BOOLEAN"), ("is_active", "BOOLEAN"), ("is_free", "BOOLEAN"), ("group_id", "BIGINT")],
    "pipelines": [("id", "BIGINT"), ("name", "VARCHAR"), ("sort", "BIGINT"), ("is_main", "BOOLEAN"),
                  ("is_archive", "BOOLEAN")],
    "statuses": [("id", "BIGINT"), ("pipeline_id", "BIGINT"), ("name", "VARCHAR"), ("sort", "BIGINT"),
                 ("type", "BIGINT"), ("color", "VARCHAR")],
    "lead_custom_fields": [("id", "BIGINT"), ("name", "VARCHAR"), ("code", "VARCHAR"), ("type", "VARCHAR"),
                           ("sort", "BIGINT")],
    "leads": [("id", "BIGINT"), ("name", "VARCHAR"), ("price", "DOUBLE"), ("responsible_user_id", "BIGINT"),
              ("status_id", "BIGINT"), ("pipeline_id", "BIGINT"), ("created_by", "BIGINT"),
              ("updated_by", "BIGINT"), ("created_at", "BIGINT"), ("updated_at", "BIGINT"),
              ("closed_at", "BIGINT"), ("loss_reason_id", "BIGINT"), ("is_deleted", "BOOLEAN")],
    "lead_contacts": [("lead_id", "BIGINT"), ("contact_id", "BIGINT"), ("is_main", "BOOLEAN"), ("position", "INTEGER")],
    "lead_companies": [("lead_id", "BIGINT"), ("company_id", "BIGINT")],
    "contacts": [("id", "BIGINT"), ("name", "VARCHAR"), ("responsible_user_id", "BIGINT"), ("created_by", "BIGINT"),
                 ("created_at", "BIGINT"), ("updated_at", "BIGINT"), ("is_deleted", "BOOLEAN")],
    "companies": [("id", "BIGINT"), ("name", "VARCHAR"), ("responsible_user_id", "BIGINT"), ("created_by", "BIGINT"),
                  ("created_at", "BIGINT"), ("updated_at", "BIGINT"), ("is_deleted", "BOOLEAN")],
    "tasks": [("id", "BIGINT"), ("created_by", "BIGINT"), ("updated_by", "BIGINT"), ("created_at", "BIGINT"),
              ("updated_at", "BIGINT"), ("responsible_user_id", "BIGINT"), ("entity_id", "BIGINT"),
              ("entity_type", "VARCHAR"), ("is_completed", "BOOLEAN"), ("task_type_id", "BIGINT"),
              ("text", "VARCHAR"), ("result_text", "VARCHAR"), ("complete_till", "BIGINT"), ("duration", "BIGINT")],
    "calls": [("id", "BIGINT"), ("entity_type", "VARCHAR"), ("entity_id", "BIGINT"), ("note_type", "VARCHAR"),
              ("created_by", "BIGINT"), ("responsible_user_id", "BIGINT"), ("created_at", "BIGINT"),
              ("updated_at", "BIGINT"), ("uniq", "VARCHAR"), ("duration", "BIGINT"), ("call_status", "BIGINT"),
              ("phone", "VARCHAR"), ("source", "VARCHAR")],
    "events": [("id", "VARCHAR"), ("seq", "BIGINT"), ("type", "VARCHAR"), ("entity_type", "VARCHAR"),
               ("entity_id", "BIGINT"), ("created_by", "BIGINT"), ("created_at", "BIGINT"),
               ("status_before", "BIGINT"), ("pipeline_before", "BIGINT"), ("status_after", "BIGINT"),
               ("pipeline_after", "BIGINT"), ("responsible_before", "BIGINT"), ("responsible_after", "BIGINT"),
               ("note_id", "BIGINT")],
    "custom_field_values": [("entity_type", "VARCHAR"), ("entity_id", "BIGINT"), ("field_id", "BIGINT"),
                            ("field_name", "VARCHAR"), ("field_code", "VARCHAR"), ("field_type", "VARCHAR"),
                            ("position", "INTEGER"), ("value", "VARCHAR"), ("enum_id", "BIGINT")],
}

#: Raw entity -> (typed table keyed by ``id``, key column of child tables to clear).
ENTITIES: dict[str, tuple[str, dict[str, str]]] = {
    "account": ("account", {}),
    "users": ("users", {}),
    "pipelines": ("pipelines", {"statuses": "pipeline_id"}),
    "lead_custom_fields": ("lead_custom_fields", {}),
    "leads": ("leads", {"lead_contacts": "lead_id", "lead_companies": "lead_id"}),
    "contacts": ("contacts", {}),
    "companies": ("companies", {}),
    "tasks": ("tasks", {}),
    "lead_notes": ("calls", {}),
    "contact_notes": ("calls", {}),
    "events": ("events", {}),
}
#: Raw entity -> the `_embedded` key of its list pages, where the two differ.
COLLECTIONS = {"lead_notes": "notes", "contact_notes": "notes", "lead_custom_fields": "custom_fields"}
_CF_ENTITY = {"leads": "lead", "contacts": "contact", "companies": "company"}
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
            f"no account store in {data_dir}: run 'kpi-report demo' for the demo account "
            "or 'kpi-report sync' for yours (or pass --data-dir)"
        )
    raise StoreError(f"several account stores in {data_dir} ({', '.join(found)}): choose one with --account")


def _int(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _first(values: Any, key: str) -> dict:
    if isinstance(values, list) and values and isinstance(values[0], dict):
        inner = values[0].get(key)
        return inner if isinstance(inner, dict) else {}
    return {}


def typed_rows(entity: str, items: list[dict]) -> dict[str, list[tuple]]:
    """Typed rows for one batch of raw items of ``entity``."""
    out: dict[str, list[tuple]] = {}

    def add(table: str, row: tuple) -> None:
        out.setdefault(table, []).append(row)

    for it in items:
        emb = it.get("_embedded") or {}
        if entity == "account":
            dts = emb.get("datetime_settings") or {}
            add("account", (it["id"], it.get("name"), it.get("subdomain"), dts.get("timezone"),
                            it.get("currency"), it.get("country")))
        elif entity == "users":
            rights = it.get("rights") or {}
            add("users", (it["id"], it.get("name"), it.get("email"), it.get("lang"), bool(rights.get("is_admin")),
                          rights.get("is_active", True) is not False, bool(rights.get("is_free")),
                          _int(rights.get("group_id"))))
        elif entity == "pipelines":
            add("pipelines", (it["id"], it.get("name"), _int(it.get("sort")), bool(it.get("is_main")),
                              bool(it.get("is_archive"))))
            for st in emb.get("statuses") or []:
                add("statuses", (st["id"], it["id"], st.get("name"), _int(st.get("sort")), _int(st.get("type")),
                                 st.get("color")))
        elif entity == "lead_custom_fields":
            add("lead_custom_fields", (it["id"], it.get("name"), it.get("code"), it.get("type"), _int(it.get("sort"))))
        elif entity == "leads":
            add("leads", (it["id"], it.get("name"), _float(it.get("price")), _int(it.get("responsible_user_id")),
                          _int(it.get("status_id")), _int(it.get("pipeline_id")), _int(it.get("created_by")),
                          _int(it.get("updated_by")), _int(it.get("created_at")), _int(it.get("updated_at")),
                          _int(it.get("closed_at")), _int(it.get("loss_reason_id")), bool(it.get("is_deleted"))))
            for pos, link in enumerate(emb.get("contacts") or []):
                add("lead_contacts", (it["id"], link["id"], bool(link.get("is_main")), pos))
            for link in emb.get("companies") or []:
                add("lead_companies", (it["id"], link["id"]))
        elif entity in ("contacts", "companies"):
            add(entity, (it["id"], it.get("name"), _int(it.get("responsible_user_id")), _int(it.get("created_by")),
                         _int(it.get("created_at")), _int(it.get("updated_at")), bool(it.get("is_deleted"))))
        elif entity == "tasks":
            result = it.get("result")
            result_text = result.get("text") if isinstance(result, dict) else None
            add("tasks", (it["id"], _int(it.get("created_by")), _int(it.get("updated_by")), _int(it.get("created_at")),
                          _int(it.get("updated_at")), _int(it.get("responsible_user_id")), _int(it.get("entity_id")),
                          it.get("entity_type"), bool(it.get("is_completed")), _int(it.get("task_type_id")),
                          it.get("text"), result_text, _int(it.get("complete_till")), _int(it.get("duration"))))
        elif entity in ("lead_notes", "contact_notes"):
            if it.get("note_type") not in ("call_in", "call_out"):
                continue
            params = it.get("params") or {}
            uniq = params.get("uniq")
            add("calls", (it["id"], "lead" if entity == "lead_notes" else "contact", _int(it.get("entity_id")),
                          it["note_type"], _int(it.get("created_by")), _int(it.get("responsible_user_id")),
                          _int(it.get("created_at")), _int(it.get("updated_at")), str(uniq) if uniq else None,
                          _int(params.get("duration")), _int(params.get("call_status")),
                          None if params.get("phone") is None else str(params.get("phone")),
                          None if params.get("source") is None else str(params.get("source"))))
        elif entity == "events":
            before, after = it.get("value_before"), it.get("value_after")
            sb, sa = _first(before, "lead_status"), _first(after, "lead_status")
            rb, ra = _first(before, "responsible_user"), _first(after, "responsible_user")
            note = _first(after, "note")
            add("events", (str(it["id"]), None, it.get("type"), it.get("entity_type"), _int(it.get("entity_id")),
                           _int(it.get("created_by")), _int(it.get("created_at")), _int(sb.get("id")),
                           _int(sb.get("pipeline_id")), _int(sa.get("id")), _int(sa.get("pipeline_id")),
                           _int(rb.get("id")), _int(ra.get("id")), _int(note.get("id"))))
        if entity in _CF_ENTITY:
            for cf in it.get("custom_fields_values") or []:
                for pos, val in enumerate(cf.get("values") or []):
                    value = val.get("value") if isinstance(val, dict) else val
                    add("custom_field_values", (
                        _CF_ENTITY[entity], it["id"], _int(cf.get("field_id")), cf.get("field_name"),
                        cf.get("field_code"), cf.get("field_type"), pos,
                        None if value is None else (value if isinstance(value, str) else json.dumps(value)),
                        _int(val.get("enum_id")) if isinstance(val, dict) else None))
    return out


def typed_frame(table: str, rows: list[tuple]) -> pd.DataFrame:
    cols = TABLES[table]
    frame = pd.DataFrame.from_records(rows, columns=[c for c, _ in cols])
    for name, kind in cols:
        if kind in ("BIGINT", "INTEGER"):
            frame[name] = frame[name].astype("Int64")
        elif kind == "DOUBLE":
            frame[name] = frame[name].astype("Float64")
        elif kind == "BOOLEAN":
            frame[name] = frame[name].astype("boolean")
        else:
            frame[name] = frame[name].astype("object")
    return frame


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


class Store:
    """One account's DuckDB file.

    Use :meth:`open`; as a context manager it closes itself.  Writes go through
    :meth:`ingest` (raw + typed, atomically) inside :meth:`transaction`.
    """

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.path = path
        self.con = con
        self.read_only = read_only
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
        """Upsert raw items of ``entity`` (API v4 shape) and their typed rows; returns the count."""
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
            "updated_at": pd.array([_int(it.get("updated_at", it.get("created_at"))) for it in items], dtype="Int64"),
            "body": [json.dumps(it, ensure_ascii=False, separators=(",", ":")) for it in items],
        })
        rows = typed_rows(entity, items)
        table, children = ENTITIES[entity]
        with self.transaction():
            con = self.con
            con.register("_batch_raw", raw)
            con.execute("INSERT OR REPLACE INTO raw SELECT entity, id, updated_at, body FROM _batch_raw")
            con.unregister("_batch_raw")
            key_frame = pd.DataFrame({"id": ids})
            con.register("_batch_ids", key_frame)
            if entity == "events":
                old = dict(con.execute("SELECT id, seq FROM events WHERE id IN (SELECT id FROM _batch_ids)").fetchall())
                nxt = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchone()[0]
                fixed = []
                for row in rows.get("events", []):
                    seq = old.get(row[0])
                    if seq is None:
                        seq, nxt = nxt, nxt + 1
                    fixed.append((row[0], seq) + row[2:])
                rows["events"] = fixed
                con.execute("DELETE FROM events WHERE id IN (SELECT id FROM _batch_ids)")
            elif entity in ("lead_notes", "contact_notes"):
                kind = "lead" if entity == "lead_notes" else "contact"
                con.execute("DELETE FROM calls WHERE entity_type = ? AND id IN "
                            "(SELECT CAST(id AS BIGINT) FROM _batch_ids)", [kind])
            else:
                con.execute(f"DELETE FROM {table} WHERE id IN (SELECT CAST(id AS BIGINT) FROM _batch_ids)")
                for child, key in children.items():
                    con.execute(f"DELETE FROM {child} WHERE {key} IN (SELECT CAST(id AS BIGINT) FROM _batch_ids)")
                if entity in _CF_ENTITY:
                    con.execute("DELETE FROM custom_field_values WHERE entity_type = ? AND entity_id IN "
                                "(SELECT CAST(id AS BIGINT) FROM _batch_ids)", [_CF_ENTITY[entity]])
            con.unregister("_batch_ids")
            for name, table_rows in rows.items():
                frame = typed_frame(name, table_rows)
                con.register("_batch_rows", frame)
                con.execute(f"INSERT INTO {name} SELECT * FROM _batch_rows")
                con.unregister("_batch_rows")
        return len(items)

    def ingest_page(self, entity: str, payload: Mapping[str, Any] | None) -> int:
        """Upsert the items of one HAL page (``None`` for a 204 answer); returns the count."""
        if not payload:
            return 0
        if entity == "account":
            return self.ingest("account", [payload])
        collection = COLLECTIONS.get(entity, entity)
        items = (payload.get("_embedded") or {}).get(collection)
        if items is None:
            raise StoreError(f"a page of {entity} has no _embedded.{collection}: not an amoCRM v4 list answer")
        return self.ingest(entity, items)

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
        """One typed table as a pandas frame (``leads.is_deleted`` includes deletion events)."""
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}: use one of {', '.join(TABLES)}")
        cols = list(columns) if columns else [c for c, _ in TABLES[table]]
        if table == "leads":
            deleted = (
                "(SELECT entity_id, arg_max(type = 'lead_deleted', (created_at, seq)) AS gone FROM events "
                "WHERE entity_type = 'lead' AND type IN ('lead_deleted', 'lead_restored') GROUP BY entity_id)"
            )
            select = ", ".join(
                "(t.is_deleted OR coalesce(d.gone, false)) AS is_deleted" if c == "is_deleted" else f"t.{c}"
                for c in cols
            )
            sql = f"SELECT {select} FROM leads t LEFT JOIN {deleted} d ON d.entity_id = t.id"
        else:
            sql = f"SELECT {', '.join(cols)} FROM {table} t"
        if where:
            sql += f" WHERE {where}"
        if "id" in cols and table != "events":
            sql += " ORDER BY t.id"
        elif table == "events":
            sql += " ORDER BY t.created_at, t.seq"
        try:
            return self.con.execute(sql).df()
        except duckdb.IOException as exc:
            raise damaged(self.path, exc) from None

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
