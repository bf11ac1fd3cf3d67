"""The frequency cap (R-46, Art 12): which customers another message of a category would
take over its cap, answered from a kept list instead of a week of sends.

A cap is "at most ``day`` per Asia/Shanghai calendar day and ``week`` per 7 days (the
send's day and the six before)". A send counts while its recipient's status says it went
out or may have (``COUNTED_STATUSES``); a failed or suppressed one does not.

Counting a company-wide week of sends per customer (1,400,000 rows and more at 1,000,000
customers) takes seconds, and the drafting page asks on every keystroke. So the answer is
kept in ``capped_customers``: one row per (category, customer) over the cap, with the last
day a new send would still be over it (``capped_through``). For a customer whose send
days, newest first, are s1 >= s2 >= ..., a send on day D (never before the newest send:
sends are recorded when they happen) is over the cap when

- the week has ``week`` sends: D <= s[week] + 6 (the week-th newest send is in D's window);
- or the day has ``day`` sends: D == s1 and s1 has at least ``day`` of them.

``capped_through`` is the later of the two, so one range scan answers "who is capped on D".

Who keeps it:

- the recipient build (``app.services.sending.build_recipients``) holds the category's lock
  (``lock``) from before it reads the audience until it commits, and recounts the
  customers it queued (``recount``) in the same transaction; builds of one category thus
  run one at a time and each sees the previous one's sends;
- a finished run recounts its customers whose sends failed, and a carrier's later report
  that a send failed recounts its customer (``release``);
- every minute the scheduler recounts every category whose list was counted with other
  cap settings than today's, or never (``recount_all(only_stale=True)``), and once a day
  every capped category (``recount_all()``).

``state`` (one row per category) records the settings the list was made with. While it
does not match the settings, ``capped`` counts live from ``recipients`` instead: slower,
never wrong. The live count is also the one for a message that has sent already (its own
recipients must not count against it).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from sqlalchemy import (
    Integer,
    String,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    or_,
    select,
    table,
    text,
)

from app.extensions import db
from app.models import CappedCustomer, CapState, Message, Recipient
from app.models.messages import CATEGORIES
from app.services import audit, message_settings
from app.timeutil import LOCAL_TZ, to_local, utcnow

log = logging.getLogger(__name__)

# Recipient outcomes that count towards the cap: the message went out or may have.
COUNTED_STATUSES = ("queued", "submitted", "delivered", "unknown")
# A message's recipients are built right after it starts sending; this much slack covers a
# build that was slow or retried.
BUILD_SLACK = timedelta(days=1)

# The sending area's table (migration 0005), named here rather than imported so that this
# module depends only on the agreed columns.
recipients = table(
    "recipients",
    column("message_id", Integer),
    column("customer_id", Integer),
    column("status", String),
    column("created_at"),
)


def local_day(moment: datetime) -> date:
    """The Asia/Shanghai calendar day of a naive-UTC moment."""
    return to_local(moment).date()


# ====================================================================== reading


def recent_messages(category: str, since: datetime, exclude_message_id: int | None = None):
    """The category's messages that started sending since ``since`` (naive UTC)."""
    recent = select(Message.id).where(
        Message.category == category,
        Message.send_started_at >= since - BUILD_SLACK,
    )
    if exclude_message_id is not None:
        recent = recent.where(Message.id != exclude_message_id)
    return recent


def is_current(category: str, cap: message_settings.Cap) -> bool:
    """True when the kept list of ``category`` was made with the settings' ``cap``."""
    row = db.session.get(CapState, category)
    return row is not None and (row.day_cap, row.week_cap) == (cap.day, cap.week)


def capped(
    cap: message_settings.Cap,
    send_at: datetime,
    category: str,
    exclude_message_id: int | None = None,
    within=None,
):
    """The customers a send of ``category`` at ``send_at`` (naive UTC) would take over
    ``cap``: a subquery of ``customer_id``, or None when nobody can be over it.

    From the kept list when it is current, else counted live (``live_capped``)."""
    own_sends = (
        exclude_message_id is not None
        and db.session.execute(
            select(
                exists().where(
                    recipients.c.message_id == exclude_message_id,
                    recipients.c.customer_id.is_not(None),
                )
            )
        ).scalar()
    )
    if own_sends or not is_current(category, cap):
        return live_capped(cap, send_at, category, exclude_message_id, within)
    c = CappedCustomer.__table__.c
    return (
        select(c.customer_id)
        .where(c.category == category, c.capped_through >= local_day(send_at))
        .subquery("capped")
    )


def sent_counts_since(
    day_start: datetime,
    week_start: datetime,
    category: str,
    exclude_message_id: int | None = None,
    within=None,
):
    """Per customer, the messages of ``category`` sent since ``day_start`` and since
    ``week_start`` (naive UTC), as a subquery ``(customer_id, day_n, week_n)``.

    The rows are reached through the category's messages that started sending in the
    window (with BUILD_SLACK), i.e. through ``recipients``' message index: the table grows
    to hundreds of millions of rows and is never scanned by time alone. ``within``, a
    select of customer ids, limits the count to those customers."""
    q = (
        select(
            recipients.c.customer_id.label("customer_id"),
            func.sum(case((recipients.c.created_at >= day_start, 1), else_=0)).label("day_n"),
            func.count().label("week_n"),
        )
        .where(
            recipients.c.message_id.in_(recent_messages(category, week_start, exclude_message_id)),
            recipients.c.created_at >= week_start,
            recipients.c.customer_id.is_not(None),
            recipients.c.status.in_(COUNTED_STATUSES),
        )
        .group_by(recipients.c.customer_id)
    )
    if within is not None:
        q = q.where(recipients.c.customer_id.in_(within))
    return q.subquery("sent")


def _can_reach(cap: message_settings.Cap, category: str, send_at: datetime, exclude_message_id):
    """(by_day, by_week): whether each limit can have been reached at all. A message gives
    a customer at most one recipient row, so fewer recent messages than a limit means
    nobody reached it."""
    day_start, week_start = message_settings.cap_windows(send_at)
    n_day, n_week = db.session.execute(
        select(
            select(func.count())
            .select_from(recent_messages(category, day_start, exclude_message_id).subquery())
            .scalar_subquery(),
            select(func.count())
            .select_from(recent_messages(category, week_start, exclude_message_id).subquery())
            .scalar_subquery(),
        )
    ).one()
    return bool(cap.day) and n_day >= cap.day, bool(cap.week) and n_week >= cap.week


def live_capped(
    cap: message_settings.Cap,
    send_at: datetime,
    category: str,
    exclude_message_id: int | None = None,
    within=None,
):
    """``capped`` counted straight from ``recipients``; None when nobody can be over it
    (fewer recent messages than either limit: then that limit is not even counted)."""
    by_day, by_week = _can_reach(cap, category, send_at, exclude_message_id)
    if not (by_day or by_week):
        return None
    day_start, week_start = message_settings.cap_windows(send_at)
    sent = sent_counts_since(
        day_start, week_start if by_week else day_start, category, exclude_message_id, within
    )
    over = []
    if by_day:
        over.append(sent.c.day_n >= cap.day)
    if by_week:
        over.append(sent.c.week_n >= cap.week)
    return select(sent.c.customer_id).where(or_(*over)).subquery("capped")


# ====================================================================== keeping the list


def lock(category: str, *, wait: bool = True) -> bool:
    """Take the category's lock for the rest of the transaction (PostgreSQL row lock on its
    ``cap_state`` row; SQLite serialises writers anyway). False when the category has no
    state row yet (before the first recount), or, with ``wait=False``, when another
    transaction holds the lock."""
    row = db.session.execute(
        select(CapState.category)
        .where(CapState.category == category)
        .with_for_update(skip_locked=not wait)
    ).first()
    return row is not None


def _local_date_sql(pg: bool, col: str) -> str:
    """SQL for the Asia/Shanghai date of a naive-UTC column. The zone has kept one offset
    (UTC+8, no daylight saving) since 1991, so a fixed shift is exact."""
    offset = LOCAL_TZ.utcoffset(datetime(2000, 1, 1))
    hours = int(offset.total_seconds() // 3600)
    if pg:
        return f"CAST({col} + INTERVAL '{hours} hours' AS DATE)"
    return f"date({col}, '{hours:+d} hours')"


def _recount_sql(pg: bool, subset: str) -> str:
    """INSERT the capped customers of :category from its counted sends since :since.

    ``newer`` is the number of sends on a day and the days after it, newest first, so the
    week-th newest send falls on the day where ``newer`` first reaches :week."""
    day = _local_date_sql(pg, "r.created_at")
    plus6 = "w.day + 6" if pg else "date(w.day, '+6 days')"
    latest = (
        "GREATEST(by_week, by_day)"
        if pg
        else "max(coalesce(by_week, by_day), coalesce(by_day, by_week))"
    )
    return f"""
    INSERT INTO capped_customers (category, customer_id, capped_through)
    SELECT :category, customer_id, {latest}
    FROM (
        SELECT w.customer_id,
               MAX(CASE WHEN :week > 0 AND w.newer >= :week AND w.newer - w.n < :week
                        THEN {plus6} END) AS by_week,
               MAX(CASE WHEN :day > 0 AND w.day = w.last_day AND w.n >= :day
                        THEN w.day END) AS by_day
        FROM (
            SELECT d.customer_id, d.day, d.n,
                   SUM(d.n) OVER (PARTITION BY d.customer_id ORDER BY d.day DESC
                                  ROWS UNBOUNDED PRECEDING) AS newer,
                   MAX(d.day) OVER (PARTITION BY d.customer_id) AS last_day
            FROM (
                SELECT r.customer_id, {day} AS day, COUNT(*) AS n
                FROM recipients r
                WHERE r.message_id IN (SELECT m.id FROM messages m
                                       WHERE m.category = :category AND m.send_started_at >= :messages_since)
                  AND r.created_at >= :since
                  AND r.customer_id IS NOT NULL
                  AND r.status IN ({", ".join(f"'{s}'" for s in COUNTED_STATUSES)})
                  {subset}
                GROUP BY r.customer_id, {day}
            ) d
        ) w
        GROUP BY w.customer_id
    ) t
    WHERE by_week IS NOT NULL OR by_day IS NOT NULL
    """


def recount(
    category: str,
    *,
    message_id: int | None = None,
    statuses: tuple[str, ...] = ("queued",),
    customer_id: int | None = None,
    now: datetime | None = None,
) -> int | None:
    """Recount the kept list of ``category``: every customer; or with ``message_id`` only
    the customers of that message's recipients in ``statuses``; or one customer. The
    caller holds ``lock`` and commits. Returns the customers now capped among those
    recounted, or None when the list is not current (a partial recount would be wrong; the
    scheduler redoes it whole)."""
    cap = message_settings.cap_for(category)
    state = db.session.get(CapState, category)
    whole = message_id is None and customer_id is None
    if not whole and (cap is None or state is None or not is_current(category, cap)):
        return None
    now = now or utcnow()
    pg = db.session.get_bind().dialect.name == "postgresql"
    kept = CappedCustomer.__table__.c
    params: dict = {"category": category}
    subset = ""
    gone = delete(CappedCustomer).where(kept.category == category)
    if message_id is not None:
        subset = (
            "AND r.customer_id IN (SELECT s.customer_id FROM recipients s WHERE s.message_id = "
            ":message_id AND s.customer_id IS NOT NULL AND s.status IN :statuses)"
        )
        params.update(message_id=message_id, statuses=tuple(statuses))
        gone = gone.where(
            kept.customer_id.in_(
                select(recipients.c.customer_id).where(
                    recipients.c.message_id == message_id, recipients.c.status.in_(statuses)
                )
            )
        )
    elif customer_id is not None:
        subset = "AND r.customer_id = :customer_id"
        params["customer_id"] = customer_id
        gone = gone.where(kept.customer_id == customer_id)
    if pg:
        db.session.execute(text("SET LOCAL jit = off"))
        db.session.execute(text("SET LOCAL work_mem = '64MB'"))
    db.session.execute(gone.execution_options(synchronize_session=False))
    capped_n = 0
    # With fewer of the category's messages in the window than a limit nobody reached it
    # (a message gives a customer one send): a build of a fresh category costs nothing.
    if cap is not None and any(_can_reach(cap, category, now, None)):
        today = local_day(now)
        # Sends before the week of today's send can no longer count against anyone.
        _day_start, week_start = message_settings.cap_windows(now)
        params.update(
            day=cap.day,
            week=cap.week,
            since=week_start,
            messages_since=week_start - BUILD_SLACK,
        )
        statement = text(_recount_sql(pg, subset))
        if message_id is not None:
            statement = statement.bindparams(bindparam("statuses", expanding=True))
        capped_n = db.session.execute(statement, params).rowcount or 0
        # What can no longer matter (capped through a day before today) is not kept.
        db.session.execute(
            delete(CappedCustomer)
            .where(kept.category == category, kept.capped_through < today)
            .execution_options(synchronize_session=False)
        )
    if pg and whole:
        db.session.execute(text("ANALYZE capped_customers"))  # the planner sees the new size
    if state is None:
        state = CapState(category=category)
        db.session.add(state)
    if whole:
        state.day_cap = cap.day if cap else None
        state.week_cap = cap.week if cap else None
        state.recounted_at = now
    return capped_n


# From this many queued recipients a build recounts its category whole: one pass over the
# category's week of sends is cheaper than picking a large message's customers out of it
# (measured at a million customers: 3.6 s whole against 6.7 s for 400,000 customers).
WHOLE_RECOUNT_FROM = 50_000


def recount_after_build(category: str, message_id: int, queued: int, now: datetime):
    """The recipient build's recount (the caller holds ``lock`` and commits): the customers
    it queued, or for a large build the whole category. None for an exempt category or a
    list that is not current and was not recounted whole."""
    if message_settings.cap_for(category) is None:
        return None
    if queued >= WHOLE_RECOUNT_FROM:
        return recount(category, now=now)
    return recount(category, message_id=message_id, now=now)


def recount_all(*, only_stale: bool = False, now: datetime | None = None) -> dict[str, int]:
    """Recount every category whose list is not current (``only_stale``) or every capped
    one, each in a transaction of its own under its lock. Returns {category: capped}."""
    done = {}
    for category in CATEGORIES:
        cap = message_settings.cap_for(category)
        state = db.session.get(CapState, category)
        if only_stale:
            counted_with = (state.day_cap, state.week_cap) if state is not None else "never"
            stale = counted_with != ((cap.day, cap.week) if cap else (None, None))
            if not stale:
                continue
        elif cap is None and state is not None and state.day_cap is None:
            continue
        if state is None:
            db.session.add(CapState(category=category))
            db.session.commit()
        lock(category)
        started = utcnow()
        done[category] = recount(category, now=now)
        audit.record(
            "frequency_caps.recounted",
            actor=None,
            target_type="cap_state",
            target_id=None,
            details={
                "category": category,
                "capped": done[category],
                "day": cap.day if cap else None,
                "week": cap.week if cap else None,
                "seconds": round((utcnow() - started).total_seconds(), 2),
            },
        )
        db.session.commit()
    return done


def release(recipient_id: int) -> None:
    """A send reported failed after the fact (a carrier's delivery report) no longer counts:
    recount its customer if the cap holds them. The caller commits.

    A report must not wait for a build of the category (seconds at a million customers):
    while one holds the lock the customer stays capped until the next recount (the run's
    end or the daily one), erring towards sending less."""
    row = db.session.execute(
        select(Recipient.customer_id, Message.category)
        .join(Message, Message.id == Recipient.message_id)
        .where(Recipient.id == recipient_id)
    ).first()
    if row is None or row.customer_id is None:
        return
    held = db.session.execute(
        select(CappedCustomer.customer_id).where(
            CappedCustomer.category == row.category,
            CappedCustomer.customer_id == row.customer_id,
        )
    ).first()
    if held is not None and lock(row.category, wait=False):
        recount(row.category, customer_id=row.customer_id)
