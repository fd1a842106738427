"""The tasks around one lead of the demo account, in its manager's style.

Follow-ups after the first conversation, meetings, the next step of an open lead (some due
today and tomorrow), the site robot's task, escalations to the supervisor, tasks after the
close, on the contact, on the company or on nothing, tasks written after the fact (born
overdue) and, now and then, a calling campaign that overloads one day.  Texts are well
written or vague, results present or not, completion on time, late or never, as the
:class:`~kpi_lib.demo.plan.Style` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import texts as tx
from .plan import DAY, HOUR, MIN, TASK_SLOTS, WIN, Plan, Style

if TYPE_CHECKING:  # pragma: no cover
    from .story import Story


def add_lead_tasks(s: Story, plan: Plan, i: int, style: Style, robot: bool, fc: int | None, quiet: int,
                   first: str) -> None:
    """The lead's tasks: the site robot's, follow-ups, meetings, escalations, after the close."""
    r, clock, cutoff = s.r, plan.clock, plan.cutoff
    t0, lid, closed, contact = plan.created[i], plan.lead_id[i], plan.closed[i], plan.contact[i]
    sup = plan.supervisor.id

    def get_owner_style(uid: int) -> Style:
        """The style of whoever owns the lead (the creator's for the supervisor)."""
        return plan.get_style(uid, style)

    if robot and r.random() < 0.7:
        done = fc if fc is not None and fc < cutoff else None
        s.add_task(0, t0 + 3, s.find_owner(t0), "leads", lid, tx.ROBOT_TASK, t0 + 15 * MIN, done)
    if fc is not None:
        fc = max(fc, t0)  # tasks come after the lead exists, even when the customer called first
    if fc is not None and r.random() < 0.85:
        created = fc + r.randint(60, 600)
        resp = s.find_owner(created)
        st = get_owner_style(resp)
        due = s.pick_due(created, r.uniform(1, 3))
        done = s.pick_completion(st, created, due)
        if closed and done and done > closed:
            done = closed if r.random() < 0.7 else None
        s.add_task(resp, created, resp, "leads", lid, s.write_task_text(st, first), due, done, s.write_result(st))
    if fc is not None and quiet - fc > 3 * DAY and r.random() < 0.45:
        created = clock.to_work_hours(fc + int((quiet - fc) * r.uniform(0.2, 0.6)), r)
        resp = s.find_owner(created)
        st = get_owner_style(resp)
        meeting = r.random() < 0.4
        due = s.pick_due(created, r.uniform(1, 4))
        s.add_task(resp, created, resp, "leads", lid, s.write_task_text(st, first, meeting), due,
                   s.pick_completion(st, created, due),
                   s.write_result(st), 2 if meeting else 1, 3600 if meeting else 0)
    if not closed and fc is not None:
        last = max([c[4] for c in s.calls if c[4] < cutoff] + [fc])
        created = min(cutoff - 60, last + r.randint(60, 900))
        resp = s.find_owner(created)
        st = get_owner_style(resp)
        due = s.pick_due(created, r.uniform(0.3, 4))
        done = None if due >= cutoff - 2 * HOUR else s.pick_completion(st, created, due)
        s.add_task(resp, created, resp, "leads", lid, s.write_task_text(st, first), due, done, s.write_result(st))
    if fc is not None and r.random() < style.escalate and quiet - fc > HOUR:
        created = clock.to_work_hours(fc + int((quiet - fc) * r.uniform(0.1, 0.8)), r)
        by = s.find_owner(created)
        if by != sup and created < quiet:
            text = r.choice(tx.ESCALATION_TASKS).format(n=r.choice((7, 10, 12, 15, 20, 30)))
            done = clock.to_work_hours(created + r.randint(HOUR, 20 * HOUR), r)
            s.add_task(by, created, sup, "leads", lid, text, created + DAY, done if done < cutoff else None,
                       r.choice(tx.SUPERVISOR_RESULTS))
    if closed and r.random() < (0.25 if plan.outcome[i] == WIN else 0.1):
        created = clock.to_work_hours(closed + r.randint(HOUR, 2 * DAY), r)
        resp = s.find_owner(closed)
        st = get_owner_style(resp)
        texts = tx.POST_WIN_TASKS if plan.outcome[i] == WIN else tx.POST_LOSS_TASKS
        due = s.pick_due(created, r.uniform(1, 3))
        s.add_task(resp, created, resp, "leads", lid, r.choice(texts), due, s.pick_completion(st, created, due),
                   s.write_result(st))
    if fc is not None and style.overdue >= 0.3 and contact and r.random() < 0.008:
        # a calling campaign dumped on one day: more tasks than anyone can do (SMART "A")
        created = clock.to_work_hours(fc + HOUR, r)
        due = clock.set_hour(clock.to_work_hours(created + DAY), 18)
        for n in range(TASK_SLOTS - s._tasks - 2):
            done = s.pick_completion(style, created, due)
            owner = s.find_owner(created)
            s.add_task(owner, created + n, owner, "contacts", contact, tx.CAMPAIGN_TASK, due, done,
                       s.write_result(style) if done else None)
    extra = r.random()
    if fc is not None and extra < 0.16:
        created = clock.to_work_hours(fc + int((quiet - fc) * r.random()), r)
        resp = s.find_owner(created)
        st = get_owner_style(resp)
        due = s.pick_due(created, r.uniform(0.5, 3))
        if extra < 0.07 and contact:
            text = r.choice(tx.CONTACT_TASKS).format(name=first, n=r.choice((5, 10, 15)))
            s.add_task(resp, created, resp, "contacts", contact, text, due, s.pick_completion(st, created, due),
                       s.write_result(st))
        elif extra < 0.11 and plan.company[i]:
            s.add_task(resp, created, resp, "companies", plan.company[i], r.choice(tx.COMPANY_TASKS), due,
                       s.pick_completion(st, created, due), s.write_result(st))
        elif extra < 0.13:
            s.add_task(resp, created, resp, None, None, r.choice(tx.FREE_TASKS), due,
                       s.pick_completion(st, created, due),
                       s.write_result(st))
        else:  # written after the fact: born overdue
            s.add_task(resp, created, resp, "leads", lid, r.choice(tx.BACKDATED_TASKS),
                       (created - r.randint(2 * HOUR, 20 * HOUR)) // HOUR * HOUR, created + r.randint(60, 600),
                       s.write_result(st))
