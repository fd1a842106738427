"""The demo account's people and plan: who works there and what every lead will be.

A :class:`Plan` fixes, once, each lead's creation time, manager, pipeline, outcome, close
time, contact, company and any reassignment, in compact arrays, so it scales to a million
leads; :mod:`kpi_lib.demo.story` then tells each lead's life from its own random stream.
Managers have a :class:`Style` each: the seed's two archetypes (a high check at few calls a
day; a lower check at many calls), a fast responder, one who escalates, one with vague
tasks, one who leaves tasks overdue, an all-rounder and one who leaves partway.
"""

from __future__ import annotations

import heapq
import random
from array import array
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import texts as tx

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
    """A user of the account; managers carry their :class:`Style`."""

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


def pick_person_name(r: random.Random) -> tuple[str, str]:
    """A Russian first name and a surname of the same gender."""
    surname = r.choice(tx.SURNAMES)
    if r.random() < 0.5:
        return r.choice(tx.MALE_FIRST), surname
    return r.choice(tx.FEMALE_FIRST), surname + "а" if surname.endswith(("ов", "ев", "ёв", "ин")) else surname


class Clock:
    """Local wall-clock arithmetic in the account's fixed UTC offset."""

    def __init__(self, offset: int):
        self.offset = offset

    def to_work_hours(self, t: int, r: random.Random | None = None, jitter: int = 5400) -> int:
        """``t`` if inside Mon–Fri 09:00–19:00 local, else the next opening (plus a jitter)."""
        day, sod = divmod(t + self.offset, DAY)
        if (day + 3) % 7 < 5 and 9 * HOUR <= sod < 19 * HOUR:
            return t
        if not ((day + 3) % 7 < 5 and sod < 9 * HOUR):
            day += 1
            while (day + 3) % 7 >= 5:
                day += 1
        return day * DAY + 9 * HOUR - self.offset + (r.randint(0, jitter) if r else 0)

    def set_hour(self, t: int, hour: float) -> int:
        """The local day of ``t`` at ``hour`` o'clock."""
        return (t + self.offset) // DAY * DAY + int(hour * HOUR) - self.offset


def _make_column(code: str = "q") -> array:
    """A compact column of numbers (64-bit, or 8-bit for flags)."""
    return array(code)


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
    styles: dict[int, Style] = field(default_factory=dict)  # manager id -> style
    # one number per lead, in creation order
    created: array = field(default_factory=_make_column)
    manager: array = field(default_factory=_make_column)      # index into managers
    pipeline: array = field(default_factory=_make_column)
    outcome: array = field(default_factory=lambda: _make_column("b"))   # OPEN, WIN or LOSS
    closed: array = field(default_factory=_make_column)       # 0 while open
    lead_id: array = field(default_factory=_make_column)
    contact: array = field(default_factory=_make_column)      # main contact id, 0 for none
    own_contact: array = field(default_factory=lambda: _make_column("b"))  # the contact is new with this lead
    second: array = field(default_factory=_make_column)       # second contact id, 0 for none
    company: array = field(default_factory=_make_column)      # 0 for none
    repeat: array = field(default_factory=lambda: _make_column("b"))    # a past customer buys again
    robot: array = field(default_factory=lambda: _make_column("b"))     # made by the site form (created_by 0)
    pre_call: array = field(default_factory=_make_column)     # the customer called this long before, 0 none
    reassign_at: array = field(default_factory=_make_column)  # moved to another manager then, 0 never
    reassign_to: array = field(default_factory=_make_column)  # index into managers, -1 none
    deleted: array = field(default_factory=lambda: _make_column("b"))   # 0; 1 gone from lists, 2 kept, 3 restored

    @property
    def supervisor(self) -> User:
        """The head of sales (the only admin)."""
        return self.users[0]

    def get_style(self, user_id: int, default: Style) -> Style:
        """The style of manager ``user_id`` (``default`` for the supervisor)."""
        return self.styles.get(user_id, default)

    def has_left(self, user_id: int, t: int) -> bool:
        """Whether ``user_id`` had left the company by ``t``."""
        return user_id == self.managers[DEPARTING].id and t >= self.departure

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
            first, last = pick_person_name(r)
            name = f"{first} {last}"
        user = User(FIRST_MANAGER_ID + k, name, f"manager{k + 1}@demo-sales.ru", False, k != DEPARTING, style)
        managers.append(user)
        users.append(user)
    departure = clock.to_work_hours(start + DEPARTURE_WEEK * 7 * DAY + 2 * DAY + 12 * HOUR)
    plan = Plan(seed, today, clock, start, cutoff, users, managers, departure, {m.id: m.style for m in managers})
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
    stay = [k for k in range(len(plan.managers)) if k != DEPARTING]  # managers who never leave
    for i, (t, m) in enumerate(rows):
        style = plan.managers[m].style
        lead_id += r.randint(1, 40)
        u = r.random()
        outcome = WIN if u < style.win else LOSS if u < style.win + style.lost else OPEN
        cycle = int(style.cycle * DAY * r.lognormvariate(0, 0.7)) + r.randint(2 * HOUR, 20 * HOUR)
        closed = plan.clock.to_work_hours(t + cycle, r) if outcome != OPEN else 0
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
            reassign_at = plan.clock.to_work_hours(t + int((end - t) * r.uniform(0.3, 0.7)), r)
            if reassign_at >= end:
                reassign_at = 0
        if reassign_at:
            reassign_to = r.choice([k for k in stay if k != m])
        plan.reassign_at.append(reassign_at)
        plan.reassign_to.append(reassign_to)


NOTE_BASE, NOTE_SLOTS = 90000000, 64
TASK_BASE, TASK_SLOTS = 60000000, 32
CSAT_FIELD, NPS_FIELD, SOURCE_FIELD, CONTRACT_FIELD = 1512001, 1512003, 1512005, 1512007
SOURCES = ((881001, "Сайт"), (881002, "Звонок"), (881003, "Рекомендация"), (881004, "Выставка"))


def make_phone(seed: int, contact_id: int) -> str:
    """The contact's mobile phone, the same wherever it is shown."""
    n = mix(seed, contact_id) % 10 ** 9
    return f"+7 9{n // 10 ** 7:02d} {n // 10 ** 4 % 1000:03d}-{n // 100 % 100:02d}-{n % 100:02d}"


def make_contact_name(seed: int, contact_id: int) -> tuple[str, str]:
    """The contact's first name and surname."""
    return pick_person_name(random.Random(mix(seed, contact_id)))


def compute_contact_created(plan: Plan, i: int, contact_id: int) -> int:
    """When a contact first made by lead ``i`` was created: before any call of that lead."""
    return plan.created[i] - plan.pre_call[i] - 60 - mix(plan.seed, contact_id) % 1800


def make_company_name(seed: int, company_id: int) -> str:
    """The company's name: ООО «…», АО «…» or a sole trader, the same wherever it is shown."""
    r = random.Random(mix(seed, company_id))
    form = r.choice(tx.COMPANY_FORMS)
    if form == "ИП":
        first, last = pick_person_name(r)
        return f"ИП {last} {first[0]}."
    return f"{form} «{r.choice(tx.COMPANY_WORDS)}{r.choice(tx.COMPANY_TAILS)}»"
