"""The amoCRM API v4 list endpoints the product reads, and the account's fixed ids.

One table for the sync (:mod:`kpi_lib.amocrm.sync` walks it) and the demo account
(:mod:`kpi_lib.demo` serves its pages in the same shapes), so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Status ids of a won and a lost lead, the same in every pipeline.
WON, LOST = 142, 143

#: Event types the KPIs and the mirror read (kpi-definitions.md §0), fetched from ``/api/v4/events``.
EVENT_TYPES = ("lead_status_changed", "entity_responsible_changed", "task_completed", "lead_deleted",
               "lead_restored", "incoming_call", "outgoing_call", "task_deleted", "contact_deleted",
               "contact_restored", "company_deleted", "company_restored", "entity_merged")

CALL_NOTES = (("filter[note_type][0]", "call_in"), ("filter[note_type][1]", "call_out"))


@dataclass(frozen=True)
class Endpoint:
    """One list endpoint and how a sync walks it.

    ``mode`` is ``full`` (everything, every time), ``seek`` (changed since the cursor, sorted by
    ``updated_at``, seeking), ``pages`` (changed since the cursor, sorted by id, following
    ``_links.next``), ``events`` (created since the cursor, following ``_links.next``) or
    ``deleted`` (everything, on the first sync and every full sync only).  ``name`` keys the
    endpoint's sync state; ``entity`` is what its items are in the store.
    """

    name: str
    entity: str
    path: str
    mode: str
    params: tuple[tuple[str, str], ...] = ()
    collection: str = ""
    limit: int = 250

    @property
    def since_key(self) -> str:
        return "filter[created_at][from]" if self.mode == "events" else "filter[updated_at][from]"


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("users", "users", "/api/v4/users", "full", (("with", "role,group"),), "users"),
    Endpoint("pipelines", "pipelines", "/api/v4/leads/pipelines", "full", (), "pipelines"),
    Endpoint("lead_custom_fields", "lead_custom_fields", "/api/v4/leads/custom_fields", "full", (), "custom_fields"),
    Endpoint("leads", "leads", "/api/v4/leads", "seek", (("with", "contacts"),), "leads"),
    Endpoint("deleted_leads", "leads", "/api/v4/leads", "deleted", (("with", "only_deleted"),), "leads"),
    Endpoint("contacts", "contacts", "/api/v4/contacts", "seek", (), "contacts"),
    Endpoint("companies", "companies", "/api/v4/companies", "seek", (), "companies"),
    Endpoint("tasks", "tasks", "/api/v4/tasks", "pages", (("order[id]", "asc"),), "tasks"),
    Endpoint("lead_notes", "lead_notes", "/api/v4/leads/notes", "seek", CALL_NOTES, "notes"),
    Endpoint("contact_notes", "contact_notes", "/api/v4/contacts/notes", "seek", CALL_NOTES, "notes"),
    Endpoint("events", "events", "/api/v4/events", "events", (("filter[type]", ",".join(EVENT_TYPES)),), "events",
             limit=100),
)
