"""One lead's life in the demo account: calls, status changes, owners, tasks and events.

:func:`tell_story` replays lead ``i`` of a :class:`~kpi_lib.demo.plan.Plan` from its own
seeded random stream, so the result is the same whenever and however often it is told.  The
story follows the manager's :class:`~kpi_lib.demo.plan.Style`: how fast the first call comes,
whether the first conversation settles the next step (FCR), how many more calls, which tasks
with which texts, when they are completed, and when the supervisor gets involved.
"""

from __future__ import annotations

import random

from ..amocrm.endpoints import LOST, WON
from . import texts as tx
from .tasks import add_lead_tasks
from .plan import (CONTRACT_FIELD, CSAT_FIELD, DAY, HOUR, LOSS, MIN, MISSING, NOTE_BASE, NOTE_SLOTS,
                   NPS_FIELD, PIPELINE_IDS, PIPELINES, SOURCE_FIELD, SOURCES, TASK_BASE, TASK_SLOTS, WIN, Plan,
                   Style, make_company_name, make_contact_name, make_phone, mix)


#: How long an unanswered call rings or talks to a machine, by call_status (seconds).
_ATTEMPT_SECONDS = {1: (15, 45), 2: (8, 30), 3: (5, 25), 5: (3, 15)}


class Story:
    """One lead's life as compact tuples (see the ``add_*`` methods for their fields)."""

    def __init__(self, plan: Plan, i: int):
        self.plan, self.i = plan, i
        self.r = random.Random(mix(plan.seed * 2 + 1, i))
        self.lead: dict | None = None
        #: (id, kind, entity_id, note_type, t, created_by, resp, uniq, duration, status, result, source, phone)
        self.calls: list[tuple] = []
        #: (id, created_by, created_at, updated_at, resp, entity_id, entity_type, done, type, text, result, due,
        #: duration)
        self.tasks: list[tuple] = []
        #: (t, order, type, entity_type, entity_id, created_by, value_before, value_after)
        self.events: list[tuple] = []
        self._notes = self._tasks = 0
        self.owners: list[tuple[int, int]] = []

    # -- who and when --------------------------------------------------------------------
    def find_owner(self, t: int) -> int:
        """The lead's responsible user at ``t``."""
        found = self.owners[0][1]
        for start, uid in self.owners:
            if start <= t:
                found = uid
        return found

    def pick_due(self, t: int, days: float) -> int:
        """A due time about ``days`` after ``t`` on a working day: end of day or a round hour."""
        r, clock = self.r, self.plan.clock
        day = clock.to_work_hours(t + int(days * DAY))
        return clock.set_hour(day, 23 + 59 / 60) if r.random() < 0.5 else clock.set_hour(day, r.randint(10, 18))

    def add_event(self, t: int, kind: str, entity_type: str, entity_id: int, by: int, before: list,
                  after: list) -> None:
        """Record an event (dropped when it would fall after the data ends)."""
        if t < self.plan.cutoff:
            self.events.append((t, len(self.events), kind, entity_type, entity_id, by, before, after))

    # -- calls ---------------------------------------------------------------------------
    def add_call(self, t: int, on_contact: bool, direction: str, connected: bool, caller: int,
                 event: bool = True) -> None:
        """Record a call note on the lead or its contact, sometimes on both, and maybe its event."""
        plan, r = self.plan, self.r
        if t >= plan.cutoff or t < plan.start or self._notes >= NOTE_SLOTS - 2 or plan.has_left(caller, t):
            return
        contact = plan.contact[self.i]
        on_contact = on_contact and bool(contact)
        src = r.random()
        source = "Mango Office" if src < 0.55 else "Sipuni" if src < 0.8 else "onlinePBX"
        if source == "Sipuni":
            status = MISSING
        elif source == "onlinePBX" and r.random() < 0.3:
            status = r.choice((8, None))
        else:
            status = 4 if connected else r.choice((6, 6, 6, 7, 7, 3, 1, 2, 5))
        if connected:
            duration = 20 if status != 4 and r.random() < 0.08 else min(2400, 21 + int(r.lognormvariate(5.2, 0.8)))
        elif status in (MISSING, 8, None):
            duration = 19 if r.random() < 0.25 else r.randint(0, 18)
        else:
            duration = r.randint(*_ATTEMPT_SECONDS.get(status, (0, 0)))
        uniq = "" if r.random() < 0.02 else "%032x" % r.getrandbits(128)
        uniq = uniq and f"{uniq[:8]}-{uniq[8:12]}-4{uniq[13:16]}-a{uniq[17:20]}-{uniq[20:]}"
        resp, created_by = caller, caller
        u = r.random()
        if u < 0.05:
            resp = 0
        elif u < 0.08:
            created_by = 0
        result = r.choice(tx.CALL_RESULTS) if connected else ""
        phone = make_phone(plan.seed, contact) if contact else make_phone(plan.seed, self.plan.lead_id[self.i])
        note_type = "call_in" if direction == "in" else "call_out"
        kinds = ["contact" if on_contact else "lead"]
        if not on_contact and contact and uniq and r.random() < 0.03:
            kinds.append("contact")  # the telephony logged the same call on the contact too
        for n, kind in enumerate(kinds):
            nid = NOTE_BASE + self.i * NOTE_SLOTS + self._notes
            self._notes += 1
            entity = plan.lead_id[self.i] if kind == "lead" else contact
            self.calls.append((nid, kind, entity, note_type, t + n * r.randint(0, 5), created_by, resp, uniq,
                               duration, status, result, source, phone))
            if kind == "lead" and event and r.random() < 0.3:
                self.add_event(t, "incoming_call" if direction == "in" else "outgoing_call", "lead", entity, caller,
                           [], [{"note": {"id": nid}}])

    # -- tasks ---------------------------------------------------------------------------
    def pick_completion(self, style: Style, created: int, due: int) -> int | None:
        """When a task is completed, or None while it is open."""
        r, plan = self.r, self.plan
        if due < plan.cutoff and r.random() < style.overdue:
            return None
        if r.random() < style.late:
            done = due + r.randint(HOUR, 3 * DAY)
        else:
            done = created + int((due - created) * r.uniform(0.2, 1.0))
        done = max(created + 60, plan.clock.to_work_hours(done, r, 3600))
        if done > due and r.random() > style.late:
            done = max(created + 60, due - r.randint(60, 3 * HOUR))
        return done if done < plan.cutoff else None

    def add_task(self, by: int, created: int, resp: int, entity_type: str | None, entity_id: int | None, text: str,
                 due: int, done: int | None, result: str | None = None, kind: int = 1, duration: int = 0,
                 event: bool = True) -> None:
        """Record a task, its ``task_completed`` event(s) and the time it was last updated."""
        plan, r = self.plan, self.r
        if created >= plan.cutoff or self._tasks >= TASK_SLOTS or plan.has_left(by, created):
            return
        if done and plan.has_left(resp, done):
            done = None  # left open by a manager who has gone
        tid = TASK_BASE + self.i * TASK_SLOTS + self._tasks
        self._tasks += 1
        updated = done or created
        if done and result and r.random() < 0.1:
            updated = min(plan.cutoff - 1, done + r.randint(HOUR, DAY))  # the result was typed in later
        if done and event and r.random() < 0.9:
            self.add_event(done, "task_completed", "task", tid, resp, [], [])
            if r.random() < 0.03 and done - created > 2 * HOUR:  # completed, reopened, completed again
                self.add_event(created + (done - created) // 2, "task_completed", "task", tid, resp, [], [])
        self.tasks.append((tid, by, created, updated, resp, entity_id, entity_type, done is not None, kind, text,
                           result if done else None, due, duration))

    def write_task_text(self, style: Style, name: str, meeting: bool = False) -> str:
        """A task text in the manager's style: well written or vague."""
        r = self.r
        if r.random() >= style.good_text:
            return r.choice(tx.VAGUE_TASKS)
        text = r.choice(tx.MEETING_TASKS if meeting else tx.GOOD_TASKS)
        return text.format(n=r.randint(5, 20), h=r.randint(10, 17), name=name, num=r.randint(1000, 9999))

    def write_result(self, style: Style) -> str | None:
        """A completed task's result in the manager's style, or None for none."""
        r = self.r
        if r.random() >= style.result:
            return None
        return r.choice(tx.GOOD_RESULTS if r.random() < style.good_result else tx.VAGUE_RESULTS)


def _draw_count(r: random.Random, mean: float) -> int:
    """A small count around ``mean`` (roughly Poisson)."""
    return max(0, round(r.gauss(mean, mean ** 0.5))) if mean > 0 else 0


def tell_story(plan: Plan, i: int) -> Story:
    """Replay lead ``i`` of the plan: calls, status changes, owners, tasks and events."""
    s = Story(plan, i)
    r, clock, cutoff = s.r, plan.clock, plan.cutoff
    t0, lid, pid = plan.created[i], plan.lead_id[i], plan.pipeline[i]
    manager = plan.managers[plan.manager[i]]
    style, sup = manager.style, plan.supervisor.id
    outcome, closed, contact, deleted = plan.outcome[i], plan.closed[i], plan.contact[i], plan.deleted[i]
    end = closed or cutoff
    quiet = end if closed else min(cutoff, t0 + int(style.cycle * DAY * r.uniform(1.0, 3.0)))
    statuses = PIPELINES[pid][1]
    unsorted, stages = statuses[0][0], [st[0] for st in statuses[1:]]
    first = make_contact_name(plan.seed, contact)[0] if contact else r.choice(tx.MALE_FIRST + tx.FEMALE_FIRST)
    pre = plan.pre_call[i]
    robot = plan.robot[i] and not 0 < pre < 600

    # owners: the creator, a reassignment from the plan, a supervisor take-over
    s.owners = [(t0, manager.id)]
    changes = []
    if plan.reassign_at[i]:
        changes.append((plan.reassign_at[i], plan.managers[plan.reassign_to[i]].id))
    if not deleted and end - t0 > 2 * DAY and r.random() < style.takeover:
        taken = clock.to_work_hours(t0 + int((end - t0) * r.uniform(0.2, 0.8)), r)
        if taken < end - HOUR:
            changes.append((taken, sup))
            if r.random() < 0.3 and taken + 3 * DAY < end:
                changes.append((clock.to_work_hours(taken + r.randint(DAY, 3 * DAY), r), -1))  # handed back
    for t, uid in sorted(changes):
        before = s.owners[-1][1]
        uid = manager.id if uid == -1 else uid
        if uid == before:
            continue
        s.owners.append((t, uid))
        s.add_event(t, "entity_responsible_changed", "lead", lid, sup, [{"responsible_user": {"id": before}}],
                [{"responsible_user": {"id": uid}}])
        if plan.own_contact[i] and uid != sup and r.random() < 0.5:  # the contact moves along (not a lead event)
            s.add_event(t, "entity_responsible_changed", "contact", contact, sup,
                        [{"responsible_user": {"id": before}}], [{"responsible_user": {"id": uid}}])

    # calls: a call just before the lead was made, the first attempts, the first conversation
    fc = None
    if pre:
        t = t0 - pre
        s.add_call(t, True, "in", pre < 600 or r.random() < 0.6, s.find_owner(t0))
        if pre < 600:
            fc = t
    uncalled = fc is None and (r.random() < 0.04 or deleted in (1, 2))
    t = t0
    if fc is None and not uncalled:
        delay = int(style.stl * 60 * r.lognormvariate(0, 0.9))
        t = clock.to_work_hours(t0, r, int(style.stl * 120)) + delay
        if r.random() < style.noanswer:
            s.add_call(t, r.random() < 0.2, "out", False, s.find_owner(t))
            for _ in range(3):
                t = clock.to_work_hours(t + r.randint(15 * MIN, 3 * HOUR), r, 1800)
                if r.random() < 0.6:
                    break
                s.add_call(t, False, "out", False, s.find_owner(t))
        if t < end:
            s.add_call(t, r.random() < 0.25, "out", True, s.find_owner(t))
            fc = t
    if deleted in (1, 2):
        if not uncalled or r.random() < 0.5:
            s.add_call(clock.to_work_hours(t0, r, 600) + r.randint(60, 900), False, "out", r.random() < 0.5, manager.id)
        gone = min(cutoff - 1, clock.to_work_hours(t0 + r.randint(HOUR, DAY), r))
        s.add_event(gone, "lead_deleted", "lead", lid, manager.id, [], [])
        if r.random() < 0.7:  # a task made before the lead turned out to be spam; it stays open
            s.add_task(0 if robot else manager.id, t0 + 3, manager.id, "leads", lid, tx.ROBOT_TASK if robot
                       else s.write_task_text(style, first), t0 + 15 * MIN if robot else s.pick_due(t0, 1), None)
        _fill_lead(s, plan, i, style, robot, unsorted if robot else stages[0], t0, first)
        if deleted == 1:
            s.lead, s.calls, s.tasks = None, [], []
            s.events = [e for e in s.events if e[2] == "lead_deleted"]
        return s
    if deleted == 3:
        gone = clock.to_work_hours(t0 + r.randint(HOUR, 6 * HOUR), r)
        s.add_event(gone, "lead_deleted", "lead", lid, manager.id, [], [])
        s.add_event(gone + r.randint(HOUR, DAY), "lead_restored", "lead", lid, sup, [], [])

    # the first conversation settles the next step (FCR), or the customer has to come back
    moves: list[int] = []
    resolved = fc is not None and r.random() < style.fcr
    if fc is not None:
        window = fc + 7 * DAY
        if resolved:
            moves.append(clock.to_work_hours(max(fc, t0) + r.randint(5 * MIN, 36 * HOUR), r))
        else:
            back = clock.to_work_hours(fc + r.randint(HOUR, 4 * DAY), r)
            if back < quiet:
                inbound = r.random() < 0.5
                s.add_call(back, r.random() < 0.25, "in" if inbound else "out", True, s.find_owner(back))
        since = max(fc, t0)
        for _ in range(_draw_count(r, style.extra)):
            t = clock.to_work_hours(since + int((quiet - since) * r.random()), r)
            if t >= quiet:
                continue
            if resolved and t <= window:
                s.add_call(t, r.random() < 0.25, "out", False, s.find_owner(t))
                continue
            if r.random() < 0.3:
                s.add_call(max(since + 60, t - r.randint(10 * MIN, 2 * HOUR)), False, "out", False, s.find_owner(t))
            s.add_call(t, r.random() < 0.25, "in" if r.random() < 0.25 else "out", True, s.find_owner(t))
        if r.random() < style.supervisor_call and quiet - fc > 4 * HOUR:
            t = clock.to_work_hours(fc + int((quiet - fc) * r.uniform(0.2, 0.9)), r)
            if t < quiet:
                s.add_call(t, r.random() < 0.2, "out", True, sup)
    owner_end = s.find_owner(end)
    if closed and contact and owner_end != sup:
        for _ in range(_draw_count(r, style.cold)):
            t = clock.to_work_hours(closed + r.randint(7 * DAY, 45 * DAY), r)
            s.add_call(t, True, "out", r.random() < 0.7, owner_end)

    # status changes: accepted from "Неразобранное", advances, the close
    status = unsorted if robot else stages[0]
    begin = max(fc, t0) if fc is not None else t0
    if robot:
        accept = max(t0 + 5, (begin if fc is not None else clock.to_work_hours(t0, r)) - r.randint(10, 120))
        s.add_event(accept, "lead_status_changed", "lead", lid, s.find_owner(accept),
                [{"lead_status": {"id": unsorted, "pipeline_id": pid}}],
                [{"lead_status": {"id": stages[0], "pipeline_id": pid}}])
        status = stages[0]
    elif plan.repeat[i] and pid != PIPELINE_IDS[0] and r.random() < 0.3 and begin + HOUR < (closed or quiet):
        # made in the main pipeline, then moved to repeat sales: a change of pipeline, not an advance
        first_stage = PIPELINES[PIPELINE_IDS[0]][1][1][0]
        moved = begin + r.randint(60, 1800)
        s.add_event(moved, "lead_status_changed", "lead", lid, s.find_owner(moved),
                [{"lead_status": {"id": first_stage, "pipeline_id": PIPELINE_IDS[0]}}],
                [{"lead_status": {"id": stages[0], "pipeline_id": pid}}])
        begin = moved
    stop = closed - HOUR if closed else quiet
    if outcome == WIN:
        k = r.randint(1, len(stages) - 1)
    elif outcome == LOSS:
        k = r.randint(0, 2)
    else:
        k = r.randint(0, len(stages) - 1)
    while len(moves) < k and stop > begin + 60:
        moves.append(clock.to_work_hours(begin + int((stop - begin) * r.random()), r))
    moves = sorted(t for t in moves if begin < t < (closed or quiet))
    level = 0
    for t in moves[: len(stages) - 1]:
        level += 1
        after = stages[level]
        if r.random() < 0.05 and level >= 2:
            after, level = stages[level - 2], level - 2  # a step back
        _change_status(s, t, lid, pid, status, after, r)
        status = after
    if closed:
        _change_status(s, closed, lid, pid, status, WON if outcome == WIN else LOST, r)
        status = WON if outcome == WIN else LOST
    add_lead_tasks(s, plan, i, style, robot, fc, quiet, first)
    _fill_lead(s, plan, i, style, robot, status, t0, first)
    return s


def _change_status(s: Story, t: int, lid: int, pid: int, before: int, after: int, r: random.Random) -> None:
    """A status change by the lead's owner (now and then by a robot)."""
    by = 0 if r.random() < 0.07 else s.find_owner(t)
    s.add_event(t, "lead_status_changed", "lead", lid, by, [{"lead_status": {"id": before, "pipeline_id": pid}}],
            [{"lead_status": {"id": after, "pipeline_id": pid}}])


def _fill_lead(s: Story, plan: Plan, i: int, style: Style, robot: bool, status: int, t0: int, first: str) -> None:
    """The lead's own fields, consistent with its story."""
    r, cutoff = s.r, plan.cutoff
    outcome, closed, lid = plan.outcome[i], plan.closed[i], plan.lead_id[i]
    price = round(style.price * r.lognormvariate(0, 0.45), -2)
    if r.random() < (0.06 if outcome == WIN else 0.15):
        price = 0
    fields: list[tuple[int, object]] = [(SOURCE_FIELD, SOURCES[0 if robot else r.randrange(1, 4)])]
    updated, updated_by = t0, 0 if robot else s.owners[0][1]
    for e in s.events:
        if e[3] == "lead" and e[0] >= updated:
            updated, updated_by = e[0], e[5]
    if outcome == WIN:
        fields.append((CONTRACT_FIELD, f"Д-{plan.today.year}/{r.randint(100, 9999)}"))
    if closed and r.random() < (0.62 if outcome == WIN else 0.05):
        u = r.random()
        if u < 0.03:
            score = r.choice(("0", "7", "отлично"))
        elif u < 0.05:
            score = "4,5"
        else:
            score = str(r.choices((1, 2, 3, 4, 5), style.csat)[0])
        fields.append((CSAT_FIELD, score))
        if r.random() < 0.6:
            fields.append((NPS_FIELD, str(r.choices(range(11), (1, 1, 1, 1, 2, 2, 3, 5, 9, 12, 14))[0])))
        survey = min(cutoff - 1, closed + r.randint(HOUR, 4 * DAY))
        if survey > updated:
            updated, updated_by = survey, 0
    product = r.choice(tx.PRODUCTS)
    company = "" if not plan.company[i] else make_company_name(plan.seed, plan.company[i])
    templates = tx.REPEAT_TEMPLATES if plan.repeat[i] else tx.LEAD_TEMPLATES
    template = r.choice([t for t in templates if company or "{company}" not in t])
    open_due = [tk[11] for tk in s.tasks if not tk[7] and tk[6] == "leads" and tk[5] == lid]
    tags = []
    if robot:
        tags.append(tx.TAGS[0])
    if plan.repeat[i]:
        tags.append(tx.TAGS[2])
    if r.random() < 0.1:
        tags.append(r.choice(tx.TAGS[3:]))
    s.lead = {
        "id": lid, "name": template.format(product=product, company=company),
        "price": int(price), "responsible_user_id": s.find_owner(cutoff), "status_id": status,
        "pipeline_id": plan.pipeline[i],
        "loss_reason_id": r.choice(tx.LOSS_REASONS) if outcome == LOSS and r.random() < 0.7 else None,
        "created_by": 0 if robot else s.owners[0][1], "updated_by": updated_by, "created_at": t0, "updated_at": updated,
        "closed_at": closed or None, "closest_task_at": min(open_due) if open_due and not closed else None,
        "fields": fields, "tags": tags,
    }
