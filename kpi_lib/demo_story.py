"""The demo account's people, plan and per-lead stories (kpi_lib.demo turns them into API pages).

A :class:`Plan` fixes, once, what every lead is: when it was created, its manager, pipeline,
outcome, close time, contact, company and any reassignment.  The plan is compact (a few
lists of numbers), so it scales to a million leads.  :func:`tell_story` then replays one lead
from its own seeded random stream — calls, status changes, tasks, events — so each entity
pass of the generator can rebuild a story cheaply instead of keeping every item in memory.
"""

from __future__ import annotations

import heapq
from array import array
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import demo_texts as tx

DAY, HOUR, MIN = 86400, 3600, 60
WEEKS = 26
TZ_NAME = "Europe/Moscow"
MISSING = "missing"  # a call_status key that is absent from params
SUPERVISOR_ID = 10400101
FIRST_MANAGER_ID = 10400111
#: pipeline id -> [(status id, name, sort, type, color)], regular statuses in sort order
PIPELINES = {
    7310001: ("Продажи", [(61000001, "Неразобранное", 10, 1, "#c1c1c1"), (61000002, "Новая заявка", 20, 0, "#99ccff"),
                          (61000003, "Квалификация", 30, 0, "#ffff99"), (61000004, "КП отправлено", 40, 0, "#ffcc66"),
                          (61000005, "Переговоры", 50, 0, "#ff9966"), (61000006, "Счёт выставлен", 60, 0, "#ccc8f9")]),
    7310002: ("Повторные продажи", [(61000011, "Неразобранное", 10, 1, "#c1c1c1"),
                                    (61000012, "Новый запрос", 20, 0, "#99ccff"),
                                    (61000013, "Подбор товара", 30, 0, "#ffff99"),
                                    (61000014, "Согласование", 40, 0, "#ffcc66"),
                                    (61000015, "Оплата", 50, 0, "#87f2c0")]),
}
PIPELINE_IDS = tuple(PIPELINES)
WON, LOST = 142, 143
OPEN, WIN, LOSS = 0, 1, 2


@dataclass(frozen=True)
class Style:
    """How one manager works; every probability is per lead unless named otherwise."""

    name: str
    leads: float            # new leads a week
    price: float            # median deal size, RUB
    win: float
    lost: float
    cycle: float            # median days from creation to close
    stl: float              # median minutes to the first call
    noanswer: float         # first attempt fails
    fcr: float              # the first conversation settles the next step
    extra: float            # further conversations per lead
    cold: float             # calls to a past customer after the close
    good_text: float        # well-written task texts
    result: float           # completed tasks get a result
    good_result: float
    late: float             # tasks completed after the due date
    overdue: float          # tasks left open past the due date
    escalate: float         # escalation task to the supervisor
    takeover: float         # the supervisor takes the lead over
    supervisor_call: float  # the supervisor calls the customer
    csat: tuple[int, ...]   # weights of scores 1..5


STYLES = (
    # the seed's first archetype: a high check at few calls a day
    Style("Андрей Соколов", 12, 125000, .46, .40, 12, 9, .30, .66, 0.8, 0.0, .85, .80, .80, .10, .05, .06, .02, .05,
          (2, 3, 10, 40, 45)),
    # the second archetype: a lower check at many calls a day
    Style("Марина Кузнецова", 20, 72000, .38, .45, 6, 4, .35, .60, 5.5, 3.0, .70, .70, .70, .12, .06, .06, .02, .05,
          (4, 6, 16, 40, 34)),
    Style("Дмитрий Волков", 16, 86000, .42, .40, 7, 1.2, .15, .88, 1.5, 0.4, .80, .80, .80, .08, .04, .05, .01, .04,
          (2, 3, 9, 38, 48)),
    Style("Игорь Морозов", 15, 90000, .36, .44, 9, 10, .30, .55, 2.0, 0.3, .70, .70, .70, .12, .06, .22, .08, .12,
          (6, 9, 20, 37, 28)),
    Style("Светлана Попова", 16, 80000, .37, .45, 8, 12, .35, .60, 2.0, 0.3, .25, .35, .30, .25, .15, .06, .02, .05,
          (5, 8, 20, 37, 30)),
    Style("Алексей Лебедев", 14, 88000, .35, .45, 10, 15, .30, .58, 2.0, 0.3, .65, .60, .60, .45, .35, .06, .02, .06,
          (5, 7, 18, 38, 32)),
    Style("Екатерина Новикова", 17, 95000, .43, .40, 8, 5, .25, .75, 2.0, 0.3, .90, .90, .85, .08, .04, .05, .01, .04,
          (2, 3, 9, 40, 46)),
    Style("Павел Егоров", 14, 82000, .38, .44, 9, 8, .30, .66, 2.0, 0.3, .75, .75, .70, .10, .08, .06, .02, .05,
          (4, 6, 14, 40, 36)),
)
DEPARTING = 7      # this style's manager leaves after DEPARTURE_WEEK weeks
DEPARTURE_WEEK = 17
MAX_MANAGERS = 120


@dataclass(frozen=True)
class User:
    id: int
    name: str
    email: str
    is_admin: bool
    is_active: bool
    style: Style | None


_MASK = (1 << 64) - 1


def mix(a: int, b: int) -> int:
    """A 64-bit hash of two integers (splitmix64), bijective in ``b`` for a fixed ``a``."""
    z = (a * 0x9E3779B97F4A7C15 + b + 0x632BE59BD9B4E019) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def person_name(r: random.Random) -> tuple[str, str]:
    """A Russian first name and a surname of the same gender."""
    surname = r.choice(tx.SURNAMES)
    if r.random() < 0.5:
        return r.choice(tx.MALE_FIRST), surname
    return r.choice(tx.FEMALE_FIRST), surname + "а" if surname.endswith(("ов", "ев", "ёв", "ин")) else surname


class Clock:
    """Local wall-clock arithmetic in the account's fixed UTC offset."""

    def __init__(self, offset: int):
        self.offset = offset

    def work(self, t: int, r: random.Random | None = None, jitter: int = 5400) -> int:
        """``t`` if inside Mon–Fri 09:00–19:00 local, else the next opening (plus a jitter)."""
        day, sod = divmod(t + self.offset, DAY)
        if (day + 3) % 7 < 5 and 9 * HOUR <= sod < 19 * HOUR:
            return t
        if not ((day + 3) % 7 < 5 and sod < 9 * HOUR):
            day += 1
            while (day + 3) % 7 >= 5:
                day += 1
        return day * DAY + 9 * HOUR - self.offset + (r.randint(0, jitter) if r else 0)

    def at(self, t: int, hour: float) -> int:
        """The local day of ``t`` at ``hour`` o'clock."""
        return (t + self.offset) // DAY * DAY + int(hour * HOUR) - self.offset

    def weekday(self, t: int) -> int:
        return ((t + self.offset) // DAY + 3) % 7


@dataclass
class Plan:
    """Everything fixed before the stories: people, time span and one row per lead."""

    seed: int
    today: date
    clock: Clock
    start: int                 # Monday 00:00 of the first of the 26 weeks
    cutoff: int                # today 00:00: nothing happens later
    users: list[User]
    managers: list[User]
    departure: int             # when the departing manager left
    created: array = field(default_factory=lambda: array("q"))
    manager: array = field(default_factory=lambda: array("q"))     # index into managers
    pipeline: array = field(default_factory=lambda: array("q"))
    outcome: array = field(default_factory=lambda: array("b"))
    closed: array = field(default_factory=lambda: array("q"))      # 0 while open
    lead_id: array = field(default_factory=lambda: array("q"))
    contact: array = field(default_factory=lambda: array("q"))     # main contact id, 0 for none
    own_contact: array = field(default_factory=lambda: array("b"))
    second: array = field(default_factory=lambda: array("q"))      # second contact id, 0 for none
    company: array = field(default_factory=lambda: array("q"))     # 0 for none
    repeat: array = field(default_factory=lambda: array("b"))
    robot: array = field(default_factory=lambda: array("b"))      # created by the site form (created_by 0)
    pre_call: array = field(default_factory=lambda: array("q"))    # seconds before creation of a contact call, 0 none
    reassign_at: array = field(default_factory=lambda: array("q"))
    reassign_to: array = field(default_factory=lambda: array("q"))
    deleted: array = field(default_factory=lambda: array("b"))     # 0, 1 gone from lists, 2 kept with event, 3 restored

    @property
    def supervisor(self) -> User:
        return self.users[0]

    def __len__(self) -> int:
        return len(self.created)


def make_plan(seed: int, today: date, scale: float) -> Plan:
    """Fix people, the 26-week span ending with the last complete week before ``today``, and every lead."""
    tz = ZoneInfo(TZ_NAME)
    midnight = datetime.combine(today, time(), tz)
    clock = Clock(int(midnight.utcoffset().total_seconds()))
    monday = today - timedelta(days=today.weekday())
    start_day = monday - timedelta(weeks=WEEKS)
    start = int(datetime.combine(start_day, time(), tz).timestamp())
    cutoff = int(midnight.timestamp())
    r = random.Random(mix(seed, 1))
    count = max(len(STYLES), min(MAX_MANAGERS, round(len(STYLES) * scale)))
    volume = len(STYLES) * scale / count
    users = [User(SUPERVISOR_ID, "Ольга Смирнова", "o.smirnova@demo-sales.ru", True, True, None)]
    managers = []
    for k in range(count):
        style = STYLES[k] if k < len(STYLES) else STYLES[k % (len(STYLES) - 1)]
        if k < len(STYLES):
            name = style.name
        else:
            first, last = person_name(r)
            name = f"{first} {last}"
        user = User(FIRST_MANAGER_ID + k, name, f"manager{k + 1}@demo-sales.ru", False, k != DEPARTING, style)
        managers.append(user)
        users.append(user)
    departure = clock.work(start + DEPARTURE_WEEK * 7 * DAY + 2 * DAY + 12 * HOUR)
    plan = Plan(seed, today, clock, start, cutoff, users, managers, departure)
    _plan_leads(plan, r, volume)
    return plan


def _plan_leads(plan: Plan, r: random.Random, volume: float) -> None:
    """Draw every lead's skeleton in creation order."""
    rows = []
    weeks = (plan.cutoff - plan.start + 7 * DAY - 1) // (7 * DAY)
    day_weights = (1.2, 1.2, 1.1, 1.1, 1.0, 0.25, 0.15)
    for w in range(weeks):
        for m, user in enumerate(plan.managers):
            style = user.style
            mean = style.leads * volume * r.uniform(0.8, 1.2)
            for _ in range(max(0, round(r.gauss(mean, mean ** 0.5 * 0.6)))):
                day = r.choices(range(7), day_weights)[0]
                if r.random() < 0.82 and day < 5:
                    sod = r.randint(9 * HOUR, 19 * HOUR - 1)
                else:
                    sod = r.randint(7 * HOUR, 23 * HOUR)
                t = plan.start + (w * 7 + day) * DAY + sod - plan.clock.offset
                if t >= plan.cutoff or (m == DEPARTING and t >= plan.departure - DAY):
                    continue
                rows.append((t, m))
    rows.sort()
    pending: list[tuple[int, int]] = []    # (closed, lead index) of won leads not closed yet at t
    won: list[int] = []                    # won leads closed before t, in close order
    lead_id = 31400000
    for i, (t, m) in enumerate(rows):
        style = plan.managers[m].style
        lead_id += r.randint(1, 40)
        u = r.random()
        outcome = WIN if u < style.win else LOSS if u < style.win + style.lost else OPEN
        cycle = int(style.cycle * DAY * r.lognormvariate(0, 0.7)) + r.randint(2 * HOUR, 20 * HOUR)
        closed = plan.clock.work(t + cycle, r) if outcome != OPEN else 0
        if closed >= plan.cutoff:
            outcome, closed = OPEN, 0
        plan.created.append(t)
        plan.manager.append(m)
        plan.outcome.append(outcome)
        plan.closed.append(closed)
        plan.lead_id.append(lead_id)
        plan.robot.append(r.random() < 0.35)
        deleted = 0
        if outcome == OPEN and r.random() < 0.03:
            deleted = r.choice((1, 2, 2, 3))
        plan.deleted.append(deleted)
        # contacts: repeat buyers reuse the contact of an earlier won lead that closed before
        repeat = r.random() < 0.22
        while pending and pending[0][0] < t:
            won.append(heapq.heappop(pending)[1])
        contact = second = company = 0
        own = False
        if repeat and won:
            j = won[len(won) - 1 - int(r.random() * min(len(won), 400))]
            contact, company = plan.contact[j], plan.company[j]
        else:
            repeat = False
            if r.random() < 0.92:
                contact, own = 52000000 + 2 * i, True
                if r.random() < 0.45:
                    company = 41000000 + 3 * r.randrange(max(1, len(rows) // 6))
                if r.random() < 0.1:
                    second = contact + 1
        plan.contact.append(contact)
        plan.own_contact.append(own)
        plan.second.append(second)
        plan.company.append(company)
        plan.repeat.append(repeat)
        plan.pipeline.append(PIPELINE_IDS[1] if r.random() < (0.8 if repeat else 0.08) else PIPELINE_IDS[0])
        u = r.random()
        pre = 0
        if contact and u < 0.10:
            pre = r.randint(20, 580)             # the customer called just before the lead was made
        elif contact and u < 0.13:
            pre = r.randint(2 * DAY, 5 * DAY)    # called days earlier: maps to no lead
        plan.pre_call.append(pre)
        if outcome == WIN and contact:
            heapq.heappush(pending, (closed, i))
        # reassignments: the departing manager's open leads, and a few moves between managers
        reassign_at, reassign_to = 0, -1
        end = closed or plan.cutoff
        if m == DEPARTING and end > plan.departure:
            reassign_at = plan.departure
        elif r.random() < 0.03 and end - t > 2 * DAY:
            reassign_at = plan.clock.work(t + int((end - t) * r.uniform(0.3, 0.7)), r)
            if reassign_at >= end:
                reassign_at = 0
        if reassign_at:
            active = [k for k in range(len(plan.managers)) if k != m and k != DEPARTING]
            reassign_to = r.choice(active)
        plan.reassign_at.append(reassign_at)
        plan.reassign_to.append(reassign_to)


NOTE_BASE, NOTE_SLOTS = 90000000, 64
TASK_BASE, TASK_SLOTS = 60000000, 16
CSAT_FIELD, NPS_FIELD, SOURCE_FIELD, CONTRACT_FIELD = 1512001, 1512003, 1512005, 1512007
SOURCES = ((881001, "Сайт"), (881002, "Звонок"), (881003, "Рекомендация"), (881004, "Выставка"))


def contact_phone(seed: int, contact_id: int) -> str:
    """The contact's mobile phone, the same wherever it is shown."""
    n = mix(seed, contact_id) % 10 ** 9
    return f"+7 9{n // 10 ** 7:02d} {n // 10 ** 4 % 1000:03d}-{n // 100 % 100:02d}-{n % 100:02d}"


def contact_person(seed: int, contact_id: int) -> tuple[str, str]:
    """The contact's first name and surname."""
    return person_name(random.Random(mix(seed, contact_id)))


def contact_created(plan: Plan, i: int, contact_id: int) -> int:
    """When a contact first made by lead ``i`` was created: before any call of that lead."""
    return plan.created[i] - plan.pre_call[i] - 60 - mix(plan.seed, contact_id) % 1800


class Story:
    """One lead's life as compact tuples (see the ``add_*`` methods for their fields)."""

    def __init__(self, plan: Plan, i: int):
        self.plan, self.i = plan, i
        self.r = random.Random(mix(plan.seed * 2 + 1, i))
        self.lead: dict | None = None
        self.calls: list[tuple] = []    # (id, kind, entity_id, note_type, t, created_by, resp, uniq, dur, status, result, source, phone)
        self.tasks: list[tuple] = []    # (id, created_by, created_at, updated_at, resp, entity_id, entity_type, done, type, text, result, due, duration)
        self.events: list[tuple] = []   # (t, order, type, entity_type, entity_id, created_by, before, after)
        self._notes = self._tasks = 0
        self.owners: list[tuple[int, int]] = []

    # -- who and when --------------------------------------------------------------------
    def owner(self, t: int) -> int:
        found = self.owners[0][1]
        for start, uid in self.owners:
            if start <= t:
                found = uid
        return found

    def due(self, t: int, days: float) -> int:
        r, clock = self.r, self.plan.clock
        day = clock.work(t + int(days * DAY))
        return clock.at(day, 23 + 59 / 60) if r.random() < 0.5 else clock.at(day, r.randint(10, 18))

    def event(self, t: int, kind: str, entity_type: str, entity_id: int, by: int, before: list, after: list) -> None:
        if t < self.plan.cutoff:
            self.events.append((t, len(self.events), kind, entity_type, entity_id, by, before, after))

    # -- calls ---------------------------------------------------------------------------
    def add_call(self, t: int, on_contact: bool, direction: str, connected: bool, caller: int,
                 event: bool = True) -> None:
        plan, r = self.plan, self.r
        if t >= plan.cutoff or t < plan.start or self._notes >= NOTE_SLOTS - 2:
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
            duration = {1: r.randint(15, 45), 2: r.randint(8, 30), 3: r.randint(5, 25), 5: r.randint(3, 15)}.get(status, 0)
        uniq = "" if r.random() < 0.02 else "%032x" % r.getrandbits(128)
        uniq = uniq and f"{uniq[:8]}-{uniq[8:12]}-4{uniq[13:16]}-a{uniq[17:20]}-{uniq[20:]}"
        resp, created_by = caller, caller
        u = r.random()
        if u < 0.05:
            resp = 0
        elif u < 0.08:
            created_by = 0
        result = r.choice(tx.CALL_RESULTS) if connected else ""
        phone = contact_phone(plan.seed, contact) if contact else f"+7 495 {r.randint(100, 999)}-{r.randint(10, 99)}-{r.randint(10, 99)}"
        note_type = "call_in" if direction == "in" else "call_out"
        kinds = ["contact" if on_contact else "lead"]
        if not on_contact and contact and uniq and r.random() < 0.03:
            kinds.append("contact")  # the telephony logged the same call on the contact too
        for n, kind in enumerate(kinds):
            nid = NOTE_BASE + self.i * NOTE_SLOTS + self._notes
            self._notes += 1
            entity = plan.lead_id[self.i] if kind == "lead" else contact
            self.calls.append((nid, kind, entity, note_type, t + n * r.randint(1, 5), created_by, resp, uniq,
                               duration, status, result, source, phone))
            if kind == "lead" and event and r.random() < 0.3:
                self.event(t, "incoming_call" if direction == "in" else "outgoing_call", "lead", entity, caller,
                           [], [{"note": {"id": nid}}])

    # -- tasks ---------------------------------------------------------------------------
    def finish(self, style: Style, created: int, due: int) -> int | None:
        """When a task is completed, or None while it is open."""
        r, plan = self.r, self.plan
        if due < plan.cutoff and r.random() < style.overdue:
            return None
        if r.random() < style.late:
            done = due + r.randint(HOUR, 3 * DAY)
        else:
            done = created + int((due - created) * r.uniform(0.2, 1.0))
        done = max(created + 60, plan.clock.work(done, r, 3600))
        if done > due and r.random() > style.late:
            done = max(created + 60, due - r.randint(60, 3 * HOUR))
        return done if done < plan.cutoff else None

    def add_task(self, by: int, created: int, resp: int, entity_type: str | None, entity_id: int | None, text: str,
                 due: int, done: int | None, result: str | None = None, kind: int = 1, duration: int = 0,
                 event: bool = True) -> None:
        plan, r = self.plan, self.r
        if created >= plan.cutoff or self._tasks >= TASK_SLOTS:
            return
        tid = TASK_BASE + self.i * TASK_SLOTS + self._tasks
        self._tasks += 1
        updated = done or created
        if done and result and r.random() < 0.1:
            updated = min(plan.cutoff - 1, done + r.randint(HOUR, DAY))  # the result was typed in later
        if done and event and r.random() < 0.9:
            self.event(done, "task_completed", "task", tid, resp, [], [])
        self.tasks.append((tid, by, created, updated, resp, entity_id, entity_type, done is not None, kind, text,
                           result if done else None, due, duration))

    def task_text(self, style: Style, name: str, meeting: bool = False) -> str:
        r = self.r
        if r.random() >= style.good_text:
            return r.choice(tx.VAGUE_TASKS)
        text = r.choice(tx.MEETING_TASKS if meeting else tx.GOOD_TASKS)
        return text.format(n=r.randint(3, 40), h=r.randint(10, 17), name=name, num=r.randint(1000, 9999))

    def result_text(self, style: Style) -> str | None:
        r = self.r
        if r.random() >= style.result:
            return None
        return r.choice(tx.GOOD_RESULTS if r.random() < style.good_result else tx.VAGUE_RESULTS)


def _count(r: random.Random, mean: float) -> int:
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
    first = contact_person(plan.seed, contact)[0] if contact else r.choice(tx.MALE_FIRST + tx.FEMALE_FIRST)
    pre = plan.pre_call[i]
    robot = plan.robot[i] and not 0 < pre < 600

    # owners: the creator, a reassignment from the plan, a supervisor take-over
    s.owners = [(t0, manager.id)]
    changes = []
    if plan.reassign_at[i]:
        changes.append((plan.reassign_at[i], plan.managers[plan.reassign_to[i]].id))
    if not deleted and end - t0 > 2 * DAY and r.random() < style.takeover:
        taken = clock.work(t0 + int((end - t0) * r.uniform(0.2, 0.8)), r)
        if taken < end - HOUR:
            changes.append((taken, sup))
            if r.random() < 0.3 and taken + 3 * DAY < end:
                changes.append((clock.work(taken + r.randint(DAY, 3 * DAY), r), -1))  # handed back
    for t, uid in sorted(changes):
        before = s.owners[-1][1]
        uid = manager.id if uid == -1 else uid
        if uid == before:
            continue
        s.owners.append((t, uid))
        s.event(t, "entity_responsible_changed", "lead", lid, sup, [{"responsible_user": {"id": before}}],
                [{"responsible_user": {"id": uid}}])

    # calls: a call just before the lead was made, the first attempts, the first conversation
    fc = None
    if pre:
        t = t0 - pre
        s.add_call(t, True, "in", pre < 600 or r.random() < 0.6, s.owner(t0))
        if pre < 600:
            fc = t
    uncalled = fc is None and (r.random() < 0.04 or deleted in (1, 2))
    t = t0
    if fc is None and not uncalled:
        delay = int(style.stl * 60 * r.lognormvariate(0, 0.9))
        t = clock.work(t0, r, int(style.stl * 120)) + delay
        if r.random() < style.noanswer:
            s.add_call(t, r.random() < 0.2, "out", False, s.owner(t))
            for _ in range(3):
                t = clock.work(t + r.randint(15 * MIN, 3 * HOUR), r, 1800)
                if r.random() < 0.6:
                    break
                s.add_call(t, False, "out", False, s.owner(t))
        if t < end:
            s.add_call(t, r.random() < 0.25, "out", True, s.owner(t))
            fc = t
    if deleted in (1, 2):
        if not uncalled or r.random() < 0.5:
            s.add_call(clock.work(t0, r, 600) + r.randint(60, 900), False, "out", r.random() < 0.5, manager.id)
        gone = min(cutoff - 1, clock.work(t0 + r.randint(HOUR, DAY), r))
        s.event(gone, "lead_deleted", "lead", lid, manager.id, [], [])
        _finish_lead(s, plan, i, style, robot, unsorted if robot else stages[0], t0, first)
        if deleted == 1:
            s.lead, s.calls, s.tasks = None, [], []
            s.events = [e for e in s.events if e[2] == "lead_deleted"]
        return s
    if deleted == 3:
        gone = clock.work(t0 + r.randint(HOUR, 6 * HOUR), r)
        s.event(gone, "lead_deleted", "lead", lid, manager.id, [], [])
        s.event(gone + r.randint(HOUR, DAY), "lead_restored", "lead", lid, sup, [], [])

    # the first conversation settles the next step (FCR), or the customer has to come back
    moves: list[int] = []
    resolved = fc is not None and r.random() < style.fcr
    if fc is not None:
        window = fc + 7 * DAY
        if resolved:
            moves.append(clock.work(fc + r.randint(5 * MIN, 36 * HOUR), r))
        else:
            back = clock.work(fc + r.randint(HOUR, 4 * DAY), r)
            if back < quiet:
                inbound = r.random() < 0.5
                s.add_call(back, r.random() < 0.25, "in" if inbound else "out", True, s.owner(back))
        for _ in range(_count(r, style.extra)):
            t = clock.work(fc + int((quiet - fc) * r.random()), r)
            if t >= quiet:
                continue
            if resolved and t <= window:
                s.add_call(t, r.random() < 0.25, "out", False, s.owner(t))
                continue
            if r.random() < 0.3:
                s.add_call(t - r.randint(10 * MIN, 2 * HOUR), False, "out", False, s.owner(t))
            s.add_call(t, r.random() < 0.25, "in" if r.random() < 0.25 else "out", True, s.owner(t))
        if r.random() < style.supervisor_call and quiet - fc > 4 * HOUR:
            t = clock.work(fc + int((quiet - fc) * r.uniform(0.2, 0.9)), r)
            if t < quiet:
                s.add_call(t, r.random() < 0.2, "out", True, sup)
    owner_end = s.owner(end)
    if closed and contact and owner_end != sup:
        for _ in range(_count(r, style.cold)):
            t = clock.work(closed + r.randint(7 * DAY, 45 * DAY), r)
            s.add_call(t, True, "out", r.random() < 0.7, owner_end)

    # status changes: accepted from "Неразобранное", advances, the close
    status = unsorted if robot else stages[0]
    begin = fc if fc is not None else t0
    if robot:
        accept = max(t0 + 5, (begin if fc is not None else clock.work(t0, r)) - r.randint(10, 120))
        s.event(accept, "lead_status_changed", "lead", lid, s.owner(accept),
                [{"lead_status": {"id": unsorted, "pipeline_id": pid}}],
                [{"lead_status": {"id": stages[0], "pipeline_id": pid}}])
        status = stages[0]
    stop = closed - HOUR if closed else quiet
    if outcome == WIN:
        k = r.randint(1, len(stages) - 1)
    elif outcome == LOSS:
        k = r.randint(0, 2)
    else:
        k = r.randint(0, len(stages) - 1)
    while len(moves) < k and stop > begin + 60:
        moves.append(clock.work(begin + int((stop - begin) * r.random()), r))
    moves = sorted(t for t in moves if begin < t < (closed or quiet))
    level = 0
    for t in moves[: len(stages) - 1]:
        level += 1
        after = stages[level]
        if r.random() < 0.05 and level >= 2:
            after, level = stages[level - 2], level - 2  # a step back
        _move(s, t, lid, pid, status, after, r)
        status = after
    if closed:
        _move(s, closed, lid, pid, status, WON if outcome == WIN else LOST, r)
        status = WON if outcome == WIN else LOST
    _add_tasks(s, plan, i, style, robot, fc, quiet, first)
    _finish_lead(s, plan, i, style, robot, status, t0, first)
    return s


def _move(s: Story, t: int, lid: int, pid: int, before: int, after: int, r: random.Random) -> None:
    by = 0 if r.random() < 0.07 else s.owner(t)
    s.event(t, "lead_status_changed", "lead", lid, by, [{"lead_status": {"id": before, "pipeline_id": pid}}],
            [{"lead_status": {"id": after, "pipeline_id": pid}}])


def _add_tasks(s: Story, plan: Plan, i: int, style: Style, robot: bool, fc: int | None, quiet: int,
               first: str) -> None:
    """The lead's tasks: the site robot's, follow-ups, meetings, escalations, after the close."""
    r, clock, cutoff = s.r, plan.clock, plan.cutoff
    t0, lid, closed, contact = plan.created[i], plan.lead_id[i], plan.closed[i], plan.contact[i]
    sup = plan.supervisor.id

    def owner_style(uid: int) -> Style:
        for m in plan.managers:
            if m.id == uid:
                return m.style
        return style

    if robot and r.random() < 0.7:
        done = fc if fc is not None and fc < cutoff else None
        s.add_task(0, t0 + 3, s.owner(t0), "leads", lid, tx.ROBOT_TASK, t0 + 15 * MIN, done)
    if fc is not None and r.random() < 0.85:
        created = fc + r.randint(60, 600)
        resp = s.owner(created)
        st = owner_style(resp)
        due = s.due(created, r.uniform(1, 3))
        done = s.finish(st, created, due)
        if closed and done and done > closed:
            done = closed if r.random() < 0.7 else None
        s.add_task(resp, created, resp, "leads", lid, s.task_text(st, first), due, done, s.result_text(st))
    if fc is not None and quiet - fc > 3 * DAY and r.random() < 0.45:
        created = clock.work(fc + int((quiet - fc) * r.uniform(0.2, 0.6)), r)
        resp = s.owner(created)
        st = owner_style(resp)
        meeting = r.random() < 0.4
        due = s.due(created, r.uniform(1, 4))
        s.add_task(resp, created, resp, "leads", lid, s.task_text(st, first, meeting), due, s.finish(st, created, due),
                   s.result_text(st), 2 if meeting else 1, 3600 if meeting else 0)
    if not closed and fc is not None:
        last = max([c[4] for c in s.calls if c[4] < cutoff] + [fc])
        created = min(cutoff - 60, last + r.randint(60, 900))
        resp = s.owner(created)
        st = owner_style(resp)
        due = s.due(created, r.uniform(0.3, 4))
        done = None if due >= cutoff - 2 * HOUR else s.finish(st, created, due)
        s.add_task(resp, created, resp, "leads", lid, s.task_text(st, first), due, done, s.result_text(st))
    if fc is not None and r.random() < style.escalate and quiet - fc > HOUR:
        created = clock.work(fc + int((quiet - fc) * r.uniform(0.1, 0.8)), r)
        by = s.owner(created)
        if by != sup and created < quiet:
            text = r.choice(tx.ESCALATION_TASKS).format(n=r.choice((7, 10, 12, 15, 20, 30)))
            done = clock.work(created + r.randint(HOUR, 20 * HOUR), r)
            s.add_task(by, created, sup, "leads", lid, text, created + DAY, done if done < cutoff else None,
                       r.choice(tx.SUPERVISOR_RESULTS))
    if closed and r.random() < (0.25 if plan.outcome[i] == WIN else 0.1):
        created = clock.work(closed + r.randint(HOUR, 2 * DAY), r)
        resp = s.owner(closed)
        st = owner_style(resp)
        texts = tx.POST_WIN_TASKS if plan.outcome[i] == WIN else tx.POST_LOSS_TASKS
        due = s.due(created, r.uniform(1, 3))
        s.add_task(resp, created, resp, "leads", lid, r.choice(texts), due, s.finish(st, created, due),
                   s.result_text(st))
    extra = r.random()
    if fc is not None and extra < 0.16:
        created = clock.work(fc + int((quiet - fc) * r.random()), r)
        resp = s.owner(created)
        st = owner_style(resp)
        due = s.due(created, r.uniform(0.5, 3))
        if extra < 0.07 and contact:
            text = r.choice(tx.CONTACT_TASKS).format(name=first, n=r.choice((5, 10, 15)))
            s.add_task(resp, created, resp, "contacts", contact, text, due, s.finish(st, created, due), s.result_text(st))
        elif extra < 0.11 and plan.company[i]:
            s.add_task(resp, created, resp, "companies", plan.company[i], r.choice(tx.COMPANY_TASKS), due,
                       s.finish(st, created, due), s.result_text(st))
        elif extra < 0.13:
            s.add_task(resp, created, resp, None, None, r.choice(tx.FREE_TASKS), due, s.finish(st, created, due),
                       s.result_text(st))
        else:  # written after the fact: born overdue
            s.add_task(resp, created, resp, "leads", lid, r.choice(tx.BACKDATED_TASKS),
                       created - r.randint(2 * HOUR, 20 * HOUR), created + r.randint(60, 600), s.result_text(st))


def _finish_lead(s: Story, plan: Plan, i: int, style: Style, robot: bool, status: int, t0: int, first: str) -> None:
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
    company = "" if not plan.company[i] else company_name(plan.seed, plan.company[i])
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
        "price": int(price), "responsible_user_id": s.owner(cutoff), "status_id": status, "pipeline_id": plan.pipeline[i],
        "loss_reason_id": r.choice(tx.LOSS_REASONS) if outcome == LOSS and r.random() < 0.7 else None,
        "created_by": 0 if robot else s.owners[0][1], "updated_by": updated_by, "created_at": t0, "updated_at": updated,
        "closed_at": closed or None, "closest_task_at": min(open_due) if open_due and not closed else None,
        "fields": fields, "tags": tags,
    }


def company_name(seed: int, company_id: int) -> str:
    r = random.Random(mix(seed, company_id))
    form = r.choice(tx.COMPANY_FORMS)
    if form == "ИП":
        first, last = person_name(r)
        return f"ИП {last} {first[0]}."
    return f"{form} «{r.choice(tx.COMPANY_WORDS)}{r.choice(tx.COMPANY_TAILS)}»"
