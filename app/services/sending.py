"""Dispatch and delivery (R-50 to R-53): from an approved message to one outcome per number.

1. **Dispatch.** Every minute ``dispatch_due`` starts the approved messages whose time
   has come (``schedule_at`` None = on approval), except non-urgent ones inside quiet
   hours (R-46). Starting is a conditional UPDATE approved -> sending, so two schedulers
   never start a message twice, and freezes the exact text in a ``SendRun``.
2. **Recipients**, built at send time by ``build_recipients`` in one transaction: one
   INSERT ... SELECT from the audience select (consent, active flag, valid mobile,
   duplicates and frequency cap evaluated *now*); excluded rows are kept as
   ``suppressed`` with their reason; the queued ones are numbered into batches of
   SEND_BATCH_SIZE by a window function, and one ``SendBatch`` per number is inserted.
3. **Delivery.** One `send` job per batch (``send_batch``). The worker claims the batch
   with a conditional UPDATE, then works in chunks: it writes the chunk's id range into
   the batch as *in flight* and commits **before** any request goes out, submits the
   chunk through the gateway (threads, paced by the shared rate limiter), and records the
   results. If the worker dies, whoever takes the batch over (a new job, or ``recover``
   after SEND_LEASE_SECONDS without a heartbeat) turns the in-flight recipients still
   queued into ``unknown``: their outcome was lost and they are never sent again without
   an operator (``retry_unknown``, audited). Recipients not yet in flight stay queued and
   are sent by the new owner, so nobody gets a message twice.
4. **Outcomes.** accepted -> submitted; permanent error -> failed; no answer -> unknown;
   transient error -> stays queued, the batch is released with backoff, and after
   SEND_MAX_ATTEMPTS the recipient fails. Delivery reports then settle submitted ones
   (``app.services.delivery_reports``). When no batch is open the message is ``sent``.

Redis carries only wake-ups (jobs) and the rate limiter; the database is the truth, so a
Redis restart loses nothing: ``recover`` puts batches whose job vanished back on the queue.
"""

from __future__ import annotations

import logging
import time as _time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis.exceptions
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import (
    Integer,
    Numeric,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import aliased

from app.extensions import db
from app.models import Customer, Message, Recipient, SendBatch, SendRun
from app.models.messages import COMMERCIAL_CATEGORIES
from app.services import audit, frequency_caps, message_settings, segments
from app.services.errors import Conflict, NotFound
from app.services.gateways import Outgoing, SubmitResult, get_gateway
from app.services.ratelimit import RateLimiter, Reservation
from app.timeutil import utcnow

log = logging.getLogger(__name__)

BUILD_JOB = "send-build-{}"
BATCH_JOB = "send-batch-{}"
# The reason (a code, shown translated) of in-flight recipients whose worker died.
LOST_REASON = "outcome_lost"


# ====================================================================== dispatch


def compose(message: Message) -> str:
    """The text that goes out, before placeholders: signature + body + opt-out line (R-49)."""
    return segments.compose(
        message.body,
        commercial=message.category in COMMERCIAL_CATEGORIES,
        opt_out_line=message_settings.get("opt_out_line"),
        signature=message_settings.SIGNATURE,
    )


def due_messages(now: datetime) -> list[Message]:
    """Approved messages whose time has come, oldest approval first."""
    return list(
        db.session.execute(
            select(Message)
            .where(
                Message.status == "approved",
                or_(Message.schedule_at.is_(None), Message.schedule_at <= now),
            )
            .order_by(Message.approved_at, Message.id)
        ).scalars()
    )


def dispatch_due(now: datetime | None = None) -> list[int]:
    """Start every due message not held by quiet hours; returns the ids started."""
    now = now or utcnow()
    quiet = message_settings.get("quiet_hours")
    started = []
    for message in due_messages(now):
        if message_settings.quiet_hold(now, message.urgent, quiet) is not None:
            continue
        if start_message(message.id, now=now):
            started.append(message.id)
    return started


def start_message(message_id: int, *, now: datetime | None = None) -> bool:
    """approved -> sending, freeze the text, queue the recipient build. False when the
    message is not (or no longer) approved, e.g. cancelled or started by another tick."""
    now = now or utcnow()
    message = db.session.get(Message, message_id)
    if message is None or message.status != "approved":
        return False
    if message.approved_version is not None and message.approved_version != message.version:
        return False  # edited after approval: the approval no longer holds
    changed = db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == "approved")
        .values(status="sending", send_started_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        db.session.rollback()
        return False
    body = compose(message)
    cfg = current_app.config
    # With {name}/{branch} placeholders the drafting page's count at their longest
    # realistic values is the estimate; each recipient's own text is counted when it goes out.
    nominal = segments.count(body)[2]
    if segments.placeholders_in(body):
        nominal = max(nominal, int(message.segments or 1))
    run = SendRun(
        message_id=message_id,
        state="building",
        gateway=cfg["SMS_GATEWAY"],
        sender=cfg["KANNEL_FROM"],
        text=body,
        segments=nominal,
        started_at=now,
    )
    db.session.add(run)
    audit.record(
        "message.send_started",
        actor=None,
        target=message,
        details={"gateway": run.gateway, "segments": run.segments},
    )
    db.session.commit()
    _enqueue_build(message_id)
    return True


def _enqueue_build(message_id: int) -> None:
    from app.jobs import enqueue

    enqueue(
        "app.jobs.sending.build_recipients",
        message_id,
        queue_name="send",
        job_id=BUILD_JOB.format(message_id),
        retry=None,
    )


def _enqueue_batches(batch_ids: list[int]) -> None:
    from app.jobs import enqueue_many

    for start in range(0, len(batch_ids), 1000):
        chunk = batch_ids[start : start + 1000]
        enqueue_many(
            "app.jobs.sending.send_batch",
            [(i,) for i in chunk],
            [BATCH_JOB.format(i) for i in chunk],
            queue_name="send",
        )


def _enqueue_batch(batch_id: int, at: datetime | None = None) -> None:
    from app.jobs import enqueue

    enqueue(
        "app.jobs.sending.send_batch",
        batch_id,
        queue_name="send",
        job_id=BATCH_JOB.format(batch_id),
        retry=None,
        at=at.replace(tzinfo=UTC) if at is not None else None,
    )


# ====================================================================== recipients


def _rate_expr(carrier, rates: dict):
    """The per-segment rate of ``carrier`` as a SQL expression (R-70 rates by carrier)."""
    money = Numeric(12, 4)
    default = literal(Decimal(str(rates.get("default") or "0")), money)
    whens = {c: literal(Decimal(str(p)), money) for c, p in sorted(rates.items()) if c != "default"}
    if not whens:
        return default
    return case(whens, value=carrier, else_=default)


def _audience(message: Message, now: datetime):
    """The audience as a subquery with columns customer_id, user_id, unit_id, mobile,
    carrier and reason (NULL = eligible), evaluated now."""
    if message.category == "inquiry":
        return inquiry_audience(now).subquery("a")
    from app.services import audience

    return audience.message_rows(message, send_at=now).subquery("a")


def build_recipients(message_id: int) -> SendRun | None:
    """Build the message's recipients and batches in one transaction, then queue the
    batches. A no-op (None) unless the run is still building, so a repeated job or a
    concurrent one never builds twice (the final conditional UPDATE decides)."""
    run = db.session.get(SendRun, message_id)
    message = db.session.get(Message, message_id)
    if run is None or message is None or run.state != "building":
        return None
    # Builds of one category run one at a time, each seeing the sends of the one before
    # it: the frequency cap is evaluated and its kept list updated under one lock.
    frequency_caps.lock(message.category)
    now = utcnow()
    size = max(int(current_app.config["SEND_BATCH_SIZE"]), 1)
    a = _audience(message, now)
    eligible = a.c.reason.is_(None)
    nominal = literal(run.segments, Integer)
    # Batches follow the order the audience select already produces (by mobile, after its
    # duplicate check), so numbering them needs no sort of its own; a batch holds up to
    # SEND_BATCH_SIZE rows of which the suppressed ones are simply not sent.
    row_no = func.row_number().over(order_by=a.c.mobile)
    rows = select(
        literal(message_id, Integer),
        a.c.customer_id,
        a.c.user_id,
        a.c.unit_id,
        a.c.mobile,
        case((eligible, "queued"), else_="suppressed"),
        func.coalesce(a.c.reason, ""),
        case((eligible, nominal), else_=0),
        case(
            (eligible, nominal * _rate_expr(a.c.carrier, message_settings.get("rates"))),
            else_=literal(Decimal("0"), Numeric(12, 4)),
        ),
        literal(0, Integer),
        case((eligible, (row_no - 1) // size), else_=null()),
        literal(""),
        literal(now),
    )
    insert_rows = insert(Recipient.__table__).from_select(
        [
            "message_id",
            "customer_id",
            "user_id",
            "unit_id",
            "mobile",
            "status",
            "reason",
            "segments",
            "cost",
            "attempts",
            "batch_no",
            "gateway_ref",
            "created_at",
        ],
        rows,
    )
    if db.session.get_bind().dialect.name == "postgresql":
        total, queued = _insert_with_batches_pg(insert_rows, message_id, now)
        batches = _batch_ids(message_id, 0)
    else:
        db.session.execute(insert_rows)
        batches = _insert_batches(message_id, first_batch_no=0, now=now)
        counts = dict(
            db.session.execute(
                select(Recipient.status, func.count())
                .where(Recipient.message_id == message_id)
                .group_by(Recipient.status)
            ).all()
        )
        total, queued = sum(counts.values()), counts.get("queued", 0)
    counts = {"queued": queued, "suppressed": total - queued}
    capped = frequency_caps.recount_after_build(message.category, message_id, queued, now)
    if message.category == "inquiry":
        # asked once, never again, whether the number went out or was a duplicate.
        db.session.execute(
            update(Customer)
            .where(
                Customer.id.in_(
                    select(Recipient.customer_id).where(
                        Recipient.message_id == message_id, Recipient.customer_id.is_not(None)
                    )
                )
            )
            .values(inquiry_sent_at=now)
            .execution_options(synchronize_session=False)
        )
    state = "sending" if batches else "done"
    claimed = db.session.execute(
        update(SendRun)
        .where(SendRun.message_id == message_id, SendRun.state == "building")
        .values(
            state=state,
            built_at=utcnow(),
            total=total,
            eligible=queued,
            suppressed=total - queued,
            batches=len(batches),
            finished_at=None if batches else now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        return None
    audit.record(
        "message.recipients_built",
        actor=None,
        target=message,
        details={
            "total": total,
            "queued": queued,
            "suppressed": counts["suppressed"],
            "batches": len(batches),
            "capped": capped,
        },
    )
    if not batches:
        _mark_sent(message_id, now)
    db.session.commit()
    _enqueue_batches(batches)
    db.session.expire_all()
    return db.session.get(SendRun, message_id)


def _insert_with_batches_pg(insert_rows, message_id: int, now: datetime) -> tuple[int, int]:
    """PostgreSQL: insert the recipients and their batches in one statement; the batches
    are grouped from the inserted rows as they are returned, not read back from the table.
    Returns (rows inserted, rows queued)."""
    ins = insert_rows.returning(Recipient.id, Recipient.status, Recipient.batch_no).cte("ins")
    grouped = (
        select(
            literal(message_id, Integer),
            ins.c.batch_no,
            func.min(ins.c.id),
            func.max(ins.c.id),
            func.count(),
            literal("queued"),
            literal(""),
            literal(0, Integer),
            literal(now),
        )
        .where(ins.c.batch_no.is_not(None))
        .group_by(ins.c.batch_no)
    )
    batches = (
        insert(SendBatch.__table__)
        .from_select(
            [
                "message_id",
                "batch_no",
                "first_id",
                "last_id",
                "size",
                "status",
                "claim_token",
                "claims",
                "enqueued_at",
            ],
            grouped,
        )
        .returning(SendBatch.__table__.c.id)
        .cte("b")
    )
    total, queued, _batches = db.session.execute(
        select(
            select(func.count()).select_from(ins).scalar_subquery(),
            select(func.count()).select_from(ins).where(ins.c.status == "queued").scalar_subquery(),
            select(func.count()).select_from(batches).scalar_subquery(),
        )
    ).one()
    return total, queued


def _batch_ids(message_id: int, first_batch_no: int) -> list[int]:
    return list(
        db.session.execute(
            select(SendBatch.id)
            .where(SendBatch.message_id == message_id, SendBatch.batch_no >= first_batch_no)
            .order_by(SendBatch.batch_no)
        ).scalars()
    )


def _insert_batches(message_id: int, *, first_batch_no: int, now: datetime) -> list[int]:
    """One SendBatch per batch number >= ``first_batch_no`` of the message's queued rows."""
    db.session.execute(
        text("""
        INSERT INTO send_batches (message_id, batch_no, first_id, last_id, size, status,
                                  claim_token, claims, enqueued_at)
        SELECT :m, batch_no, MIN(id), MAX(id), COUNT(*), 'queued', '', 0, :now
        FROM recipients
        WHERE message_id = :m AND status = 'queued' AND batch_no >= :first
        GROUP BY batch_no
    """),
        {"m": message_id, "now": now, "first": first_batch_no},
    )
    return _batch_ids(message_id, first_batch_no)


# ====================================================================== delivery


@dataclass
class BatchReport:
    """What one run of ``send_batch`` did (for logs and tests)."""

    batch_id: int
    outcome: str  # done | released | held | not_claimed | lost_claim
    counts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Row:
    id: int
    mobile: str
    name: str
    branch: str
    carrier: str


@dataclass(frozen=True)
class _Claim:
    """What a worker needs of the batch it claimed, as plain values: ORM objects would be
    reloaded after every commit."""

    id: int
    message_id: int
    batch_no: int
    first_id: int
    last_id: int
    token: str


def _claim(batch_id: int, token: str, now: datetime) -> _Claim | None:
    """Claim a batch for this worker: a queued one that is due, or one whose owner let its
    lease run out (then its in-flight recipients become unknown). Commits."""
    lease = timedelta(seconds=current_app.config["SEND_LEASE_SECONDS"])
    batch = db.session.get(SendBatch, batch_id)
    if batch is None or batch.status == "done":
        return None
    if batch.status == "queued" and batch.not_before is not None and batch.not_before > now:
        return None
    stale = batch.status == "sending"
    if stale and batch.heartbeat_at is not None and batch.heartbeat_at >= now - lease:
        return None
    old_status, old_token = batch.status, batch.claim_token
    won = db.session.execute(
        update(SendBatch)
        .where(
            SendBatch.id == batch_id,
            SendBatch.status == old_status,
            SendBatch.claim_token == old_token,
        )
        .values(
            status="sending",
            claim_token=token,
            claims=SendBatch.claims + 1,
            heartbeat_at=now,
            not_before=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        db.session.rollback()
        return None
    if stale:
        _lose_inflight(batch, now)
    claim = _Claim(batch.id, batch.message_id, batch.batch_no, batch.first_id, batch.last_id, token)
    db.session.commit()
    return claim


def _lose_inflight(batch: SendBatch, now: datetime) -> int:
    """The recipients a dead worker had in flight and left queued: outcome unknown (R-52)."""
    lost = 0
    if batch.inflight_lo is not None and batch.inflight_hi is not None:
        lost = db.session.execute(
            text(
                "UPDATE recipients SET status = 'unknown', reason = :reason, finished_at = :now "
                "WHERE message_id = :m AND status = 'queued' AND batch_no = :bn "
                "AND id BETWEEN :lo AND :hi"
            ),
            {
                "reason": LOST_REASON,
                "now": now,
                "m": batch.message_id,
                "bn": batch.batch_no,
                "lo": batch.inflight_lo,
                "hi": batch.inflight_hi,
            },
        ).rowcount
    db.session.execute(
        update(SendBatch)
        .where(SendBatch.id == batch.id)
        .values(inflight_lo=None, inflight_hi=None)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        "send.batch_taken_over",
        actor=None,
        target_type="send_batches",
        target_id=batch.id,
        details={"message": batch.message_id, "unknown": lost},
    )
    return lost


def _owns(batch_id: int, token: str, **values) -> bool:
    """Renew the lease (and set ``values``) if this worker still owns the batch."""
    values["heartbeat_at"] = utcnow()
    return (
        db.session.execute(
            update(SendBatch)
            .where(
                SendBatch.id == batch_id,
                SendBatch.claim_token == token,
                SendBatch.status == "sending",
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )


_CHUNK_PERSONAL = text("""
    SELECT r.id, r.mobile, COALESCE(c.name, us.display_name, '') AS name,
           COALESCE(un.name, '') AS branch, COALESCE(c.carrier, '') AS carrier
    FROM recipients r
    LEFT JOIN customers c ON c.id = r.customer_id
    LEFT JOIN users us ON us.id = r.user_id
    LEFT JOIN units un ON un.id = r.unit_id
    WHERE r.message_id = :m AND r.status = 'queued' AND r.batch_no = :bn
      AND r.id > :after AND r.id <= :last
    ORDER BY r.id
    LIMIT :limit
""")
_CHUNK_PLAIN = text("""
    SELECT r.id, r.mobile, '' AS name, '' AS branch, '' AS carrier
    FROM recipients r
    WHERE r.message_id = :m AND r.status = 'queued' AND r.batch_no = :bn
      AND r.id > :after AND r.id <= :last
    ORDER BY r.id
    LIMIT :limit
""")


def _next_chunk(batch, after_id: int, limit: int, personal: bool = True) -> list[_Row]:
    """The next queued recipients of the batch; with the names and carrier only when the
    text has placeholders (otherwise segments and cost are those set at build time)."""
    rows = db.session.execute(
        _CHUNK_PERSONAL if personal else _CHUNK_PLAIN,
        {
            "m": batch.message_id,
            "bn": batch.batch_no,
            "after": after_id,
            "last": batch.last_id,
            "limit": limit,
        },
    ).all()
    return [_Row(*row) for row in rows]


def _chunk_size(cfg, rate: int) -> int:
    size = max(int(cfg["SEND_CHUNK_SIZE"]), 1)
    if rate:
        size = min(size, max(rate, 1))  # about a second of sending per chunk at most
    return size


def _reserve(limiter: RateLimiter, n: int, batch_id: int, token: str) -> Reservation | None:
    """Reserve ``n`` slots, riding out a Redis outage while keeping the lease; None when the
    outage outlasts half the lease (the batch is then released for later)."""
    deadline = _time.monotonic() + current_app.config["SEND_LEASE_SECONDS"] / 2
    delay = 0.5
    while True:
        try:
            reservation = limiter.reserve(n)
            break
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            if _time.monotonic() > deadline:
                log.error("rate limiter unreachable, releasing batch %s: %s", batch_id, exc)
                return None
            log.warning("rate limiter unreachable (%s); retrying in %.1fs", exc, delay)
            if not _owns(batch_id, token):
                db.session.rollback()
                return None
            db.session.commit()
            _time.sleep(delay)
            delay = min(delay * 2, 5.0)
    # A long wait for our turn (busy contract rate): keep the lease alive meanwhile.
    while reservation.wait > 10:
        _time.sleep(10)
        if not _owns(batch_id, token):
            db.session.rollback()
            return None
        db.session.commit()
    return reservation


def _submit_lane(gateway, messages: list[Outgoing], slots: list[float]) -> list[SubmitResult]:
    return [_submit_at(gateway, sms, at) for sms, at in zip(messages, slots, strict=True)]


def _submit_at(gateway, sms: Outgoing, at: float) -> SubmitResult:
    pause = at - _time.monotonic()
    if pause > 0:
        _time.sleep(pause)
    try:
        return gateway.submit(sms)
    except Exception as exc:  # a gateway bug must not lose the other results of the chunk
        log.exception(
            "gateway %s raised for recipient %s", getattr(gateway, "name", "?"), sms.recipient_id
        )
        return SubmitResult.unknown(f"gateway error: {exc!r}"[:200])


# What each kind of answer does to a recipient. Values marked {ref} {reason} {seg} {cost}
# differ per row; they are bound per row (SQLite, executemany) or picked from arrays by
# the row's position (PostgreSQL: one UPDATE per chunk).
_RESULT_SET = {
    "accepted": (
        "status = CASE WHEN status IN ('queued', 'unknown') THEN 'submitted' ELSE status END, "
        "submitted_at = COALESCE(submitted_at, :now), reason = '', attempts = attempts + 1"
    ),
    "permanent": (
        "status = CASE WHEN status IN ('queued', 'unknown') THEN 'failed' ELSE status END, "
        "reason = {reason}, finished_at = :now, attempts = attempts + 1"
    ),
    "unknown": (
        "status = CASE WHEN status = 'queued' THEN 'unknown' ELSE status END, "
        "reason = {reason}, finished_at = :now, attempts = attempts + 1"
    ),
    "transient": (
        "attempts = attempts + 1, reason = {reason}, "
        "status = CASE WHEN attempts + 1 >= :max THEN 'failed' ELSE status END, "
        "finished_at = CASE WHEN attempts + 1 >= :max THEN :now ELSE finished_at END"
    ),
}
_RESULT_WHERE = {"transient": " AND status = 'queued'"}
_ARRAY_TYPES = {"ref": "text", "reason": "text", "seg": "integer", "cost": "numeric"}
_result_cache: dict = {}


def _result_statement(kind: str, with_ref: bool, personal: bool, pg: bool):
    """The UPDATE for one kind of answer; only the columns that vary are bound per row.
    On PostgreSQL the rows are found by primary key only: a message just built is not in
    the planner's statistics yet, and a condition on message_id could make it scan all of
    the message's rows."""
    key = (kind, with_ref, personal, pg)
    if key in _result_cache:
        return _result_cache[key]
    sets = _RESULT_SET[kind]
    if with_ref and kind == "accepted":
        sets += ", gateway_ref = {ref}"
    if personal and kind in ("accepted", "unknown"):
        sets += ", segments = {seg}, cost = {cost}"
    if pg:
        values = {
            name: f"(CAST(:{name}s AS {t}[]))[array_position(CAST(:ids AS bigint[]), id)]"
            for name, t in _ARRAY_TYPES.items()
        }
        where = "id = ANY(CAST(:ids AS bigint[]))"
    else:
        values = {name: f":{name}" for name in _ARRAY_TYPES}
        where = "id = :id"
    sql = (
        f"UPDATE recipients SET {sets.format(**values)} "
        f"WHERE {where} AND batch_no = :bn{_RESULT_WHERE.get(kind, '')}"
    )
    stmt = text(sql)
    if not pg and "{cost}" in sets:
        stmt = stmt.bindparams(bindparam("cost", type_=Numeric(12, 4)))
    _result_cache[key] = stmt
    return stmt


def _personal_text(
    template: str, row: _Row, has_placeholders: bool, extra: dict | None = None
) -> str:
    """The recipient's own text: {name} and {branch} from the customer (or staff member)
    record, and the variables an API client gave for this customer (``extra``)."""
    if not has_placeholders:
        return template
    values = {"name": row.name, "branch": row.branch}
    if extra:
        values.update({str(k): str(v) for k, v in extra.items()})
    return segments.expand(template, values)


def _api_values(message_id: int, rows: list[_Row]) -> dict[int, dict]:
    """Per recipient, the variables of an API send (R-15); empty for other messages."""
    from app.services import api_messages

    return api_messages.values_for_recipients(message_id, [row.id for row in rows])


def send_batch(batch_id: int, *, gateway=None, limiter: RateLimiter | None = None) -> BatchReport:
    """Claim batch ``batch_id`` and submit its queued recipients (see the module doc).

    Two chunks overlap: while one chunk's requests are out, the results of the one before
    are written. The in-flight mark therefore spans from the first recipient without a
    recorded result to the last one handed to the gateway, and is committed before any
    request of a chunk goes out. Safe to call twice or concurrently: only the claim's
    winner sends. Returns what it did.
    """
    from app.redis_conn import get_redis

    cfg = current_app.config
    claim = _claim(batch_id, uuid.uuid4().hex, utcnow())
    if claim is None:
        return BatchReport(batch_id, "not_claimed")
    run = db.session.get(SendRun, claim.message_id)
    template, sender = run.text, run.sender
    urgent = bool(db.session.get(Message, claim.message_id).urgent)
    rate = int(cfg["SMS_MAX_RATE"] or 0)
    if limiter is None:
        limiter = RateLimiter(get_redis() if rate else None, rate)
    own_gateway = gateway is None
    gateway = gateway or get_gateway(cfg)
    quiet = message_settings.get("quiet_hours")
    rates = message_settings.get("rates")
    has_placeholders = bool(segments.placeholders_in(template))
    chunk = _chunk_size(cfg, limiter.rate)
    max_attempts = max(int(cfg["SEND_MAX_ATTEMPTS"]), 1)
    db.session.commit()  # end the read transaction; nothing below reads the ORM objects
    counts: dict[str, int] = {}
    cursor = claim.first_id - 1
    had_transient = False
    stop: tuple[str, datetime | None] | None = None  # (outcome, not_before)
    pending = None  # (rows, texts, futures) of the chunk whose answers are awaited
    threads = max(int(cfg["SEND_CONCURRENCY"]), 1)
    pool = ThreadPoolExecutor(threads)
    try:
        while True:
            rows: list[_Row] = []
            if stop is None and not had_transient:
                hold = message_settings.quiet_hold(utcnow(), urgent, quiet)
                if hold is not None:
                    stop = ("held", hold)
                else:
                    rows = _next_chunk(claim, cursor, chunk, has_placeholders)
            reservation = None
            if rows:
                reservation = _reserve(limiter, len(rows), claim.id, claim.token)
                if reservation is None:
                    stop, rows = ("released", utcnow() + timedelta(seconds=30)), []
            dispatched = None
            if rows:
                lo = pending[0][0].id if pending else rows[0].id
                if not _owns(claim.id, claim.token, inflight_lo=lo, inflight_hi=rows[-1].id):
                    db.session.rollback()
                    stop, rows = ("lost_claim", None), []
                else:
                    db.session.commit()  # in flight is on record before anything goes out
                    extra = _api_values(claim.message_id, rows) if has_placeholders else {}
                    texts = [
                        _personal_text(template, row, has_placeholders, extra.get(row.id))
                        for row in rows
                    ]
                    outgoing = [
                        Outgoing(row.id, row.mobile, body, sender)
                        for row, body in zip(rows, texts, strict=True)
                    ]
                    lanes = min(threads, len(outgoing))
                    # One task per connection, each taking every lanes-th message in slot
                    # order: a few futures per chunk instead of one per message.
                    futures = [
                        pool.submit(
                            _submit_lane,
                            gateway,
                            outgoing[k::lanes],
                            [reservation.slot(i) for i in range(k, len(outgoing), lanes)],
                        )
                        for k in range(lanes)
                    ]
                    dispatched = (rows, texts, futures)
                    cursor = rows[-1].id
            if pending is not None:
                lanes = [f.result() for f in pending[2]]
                results = [lanes[i % len(lanes)][i // len(lanes)] for i in range(len(pending[0]))]
                inflight = (rows[0].id, rows[-1].id) if dispatched else (None, None)
                _record(
                    claim,
                    claim.token,
                    pending[0],
                    pending[1],
                    results,
                    rates,
                    max_attempts,
                    inflight=inflight,
                    personal=has_placeholders,
                )
                gateway.flush()
                for result in results:
                    counts[result.kind] = counts.get(result.kind, 0) + 1
                if any(r.kind == "transient" for r in results):
                    had_transient = True  # the gateway is struggling: back off, keep attempts
            pending = dispatched
            if pending is None:
                break
    finally:
        pool.shutdown(wait=True)
        if own_gateway:
            gateway.close()
    if stop is not None:
        outcome, not_before = stop
        if outcome == "lost_claim":
            return BatchReport(batch_id, outcome, counts)
        _release(claim, claim.token, not_before=not_before)
        return BatchReport(batch_id, outcome, counts)
    return _finish_batch(claim, claim.token, had_transient, counts)


def _record(
    batch,
    token: str,
    rows: list[_Row],
    texts: list[str],
    results: list[SubmitResult],
    rates: dict,
    max_attempts: int,
    inflight: tuple[int | None, int | None] = (None, None),
    personal: bool = True,
) -> None:
    """Write a chunk's results and move the in-flight mark on (to ``inflight``: the chunk
    already handed to the gateway, if any), in one transaction. A personalised text has
    its own length: its segments and cost are counted again here; otherwise those set at
    build time stand."""
    now = utcnow()
    pg = db.session.get_bind().dialect.name == "postgresql"
    grouped: dict[str, list] = {}
    for row, body, result in zip(rows, texts, results, strict=True):
        grouped.setdefault(result.kind, []).append((row, body, result))
    for kind, items in grouped.items():
        with_ref = any(result.reference for _row, _body, result in items)
        stmt = _result_statement(kind, with_ref, personal, pg)
        per_row = []
        for row, body, result in items:
            values = {"id": row.id, "ref": result.reference[:64], "reason": result.reason[:200]}
            if personal:
                values["seg"] = segments.count(body)[2]
                values["cost"] = message_settings.rate_for(row.carrier, rates) * values["seg"]
            per_row.append(values)
        common = {"bn": batch.batch_no, "now": now, "max": max_attempts}
        if pg:
            params = dict(common, ids=[v["id"] for v in per_row])
            for name in ("ref", "reason", "seg", "cost"):
                if f":{name}s" in stmt.text:
                    params[f"{name}s"] = [v[name] for v in per_row]
            db.session.execute(stmt, params)
        else:
            db.session.execute(stmt, [dict(common, **v) for v in per_row])
    _owns(batch.id, token, inflight_lo=inflight[0], inflight_hi=inflight[1])
    db.session.commit()


def _release(batch, token: str, *, not_before: datetime) -> None:
    """Give the batch back to the queue, to be claimed again at ``not_before``."""
    now = utcnow()
    released = db.session.execute(
        update(SendBatch)
        .where(SendBatch.id == batch.id, SendBatch.claim_token == token)
        .values(
            status="queued",
            claim_token="",
            not_before=not_before,
            enqueued_at=now,
            heartbeat_at=now,
            inflight_lo=None,
            inflight_hi=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if released:
        _enqueue_batch(batch.id, at=not_before)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 300))


def _finish_batch(batch, token: str, had_transient: bool, counts: dict) -> BatchReport:
    left = db.session.execute(
        select(func.count(), func.max(Recipient.attempts)).where(
            Recipient.message_id == batch.message_id,
            Recipient.status == "queued",
            Recipient.batch_no == batch.batch_no,
            Recipient.id.between(batch.first_id, batch.last_id),
        )
    ).one()
    if left[0]:
        _release(batch, token, not_before=utcnow() + _backoff(left[1] or 1))
        return BatchReport(batch.id, "released", counts)
    now = utcnow()
    done = db.session.execute(
        update(SendBatch)
        .where(SendBatch.id == batch.id, SendBatch.claim_token == token)
        .values(status="done", done_at=now, heartbeat_at=now, inflight_lo=None, inflight_hi=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not done:
        return BatchReport(batch.id, "lost_claim", counts)
    finish_run_if_done(batch.message_id)
    return BatchReport(batch.id, "done", counts)


def finish_run_if_done(message_id: int) -> bool:
    """sending -> sent once no batch of the message is open; True if this call did it."""
    open_batches = db.session.execute(
        select(func.count())
        .select_from(SendBatch)
        .where(SendBatch.message_id == message_id, SendBatch.status != "done")
    ).scalar_one()
    if open_batches:
        return False
    now = utcnow()
    won = db.session.execute(
        update(SendRun)
        .where(SendRun.message_id == message_id, SendRun.state == "sending")
        .values(state="done", finished_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        db.session.rollback()
        return False
    _mark_sent(message_id, now)
    db.session.commit()
    _recount_failed(message_id)
    return True


def _recount_failed(message_id: int) -> None:
    """Failed sends do not count towards the frequency cap: recount their customers."""
    category = db.session.execute(
        select(Message.category).where(Message.id == message_id)
    ).scalar_one()
    failed = db.session.execute(
        select(Recipient.id)
        .where(Recipient.message_id == message_id, Recipient.status == "failed")
        .limit(1)
    ).first()
    if failed is None or message_settings.cap_for(category) is None:
        return
    frequency_caps.lock(category)
    frequency_caps.recount(category, message_id=message_id, statuses=("failed",))
    db.session.commit()


def _mark_sent(message_id: int, now: datetime) -> None:
    db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == "sending")
        .values(status="sent", sent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    counts = outcome_counts(message_id)
    audit.record(
        "message.sent", actor=None, target_type="messages", target_id=message_id, details=counts
    )


# ====================================================================== recovery


def _job_pending(job_id: str, now: datetime | None = None) -> bool:
    """True when RQ still holds the job waiting or running (so re-queueing would double it).

    A job scheduled for later (a batch held back by the rate limiter or a backoff) waits on
    the RQ scheduler of some worker. When that worker dies, its scheduler lock outlives it
    and another worker takes the lock over only at its next maintenance (up to ten
    minutes): a job overdue by more than SEND_REQUEUE_SECONDS is therefore not pending; it
    is taken off the scheduled registry, so that re-queueing it runs it once."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus
    from rq.registry import ScheduledJobRegistry

    from app.redis_conn import get_redis

    connection = get_redis()
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status()
    if status == JobStatus.SCHEDULED:
        registry = ScheduledJobRegistry(job.origin, connection=connection)
        try:
            due = registry.get_scheduled_time(job)
        except NoSuchJobError:
            return False
        grace = timedelta(seconds=current_app.config["SEND_REQUEUE_SECONDS"])
        if due.replace(tzinfo=None) < (now or utcnow()) - grace:
            registry.remove(job)
            return False
        return True
    return status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED)


def recover(now: datetime | None = None) -> dict[str, int]:
    """The minute's safety net: take over batches whose worker died (their in-flight
    recipients become unknown), put back on the queue batches and builds whose job was
    lost, and finish runs whose last batch is done. Returns what it did."""
    now = now or utcnow()
    cfg = current_app.config
    lease_cut = now - timedelta(seconds=cfg["SEND_LEASE_SECONDS"])
    requeue_cut = now - timedelta(seconds=cfg["SEND_REQUEUE_SECONDS"])
    report = {"taken_over": 0, "requeued": 0, "builds": 0, "finished": 0}

    stale = (
        db.session.execute(
            select(SendBatch).where(
                SendBatch.status == "sending", SendBatch.heartbeat_at < lease_cut
            )
        )
        .scalars()
        .all()
    )
    for batch in stale:
        won = db.session.execute(
            update(SendBatch)
            .where(
                SendBatch.id == batch.id,
                SendBatch.status == "sending",
                SendBatch.claim_token == batch.claim_token,
                SendBatch.heartbeat_at < lease_cut,
            )
            .values(status="queued", claim_token="", enqueued_at=now, not_before=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            db.session.rollback()
            continue
        _lose_inflight(batch, now)
        db.session.commit()
        _enqueue_batch(batch.id)
        report["taken_over"] += 1

    waiting = (
        db.session.execute(
            select(SendBatch.id)
            .where(
                SendBatch.status == "queued",
                or_(SendBatch.enqueued_at.is_(None), SendBatch.enqueued_at < requeue_cut),
                or_(SendBatch.not_before.is_(None), SendBatch.not_before <= now),
            )
            .order_by(SendBatch.id)
        )
        .scalars()
        .all()
    )
    for batch_id in waiting:
        if _job_pending(BATCH_JOB.format(batch_id), now):
            continue
        db.session.execute(
            update(SendBatch)
            .where(SendBatch.id == batch_id)
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        _enqueue_batch(batch_id)
        report["requeued"] += 1

    building = (
        db.session.execute(
            select(SendRun.message_id).where(
                SendRun.state == "building", SendRun.started_at < lease_cut
            )
        )
        .scalars()
        .all()
    )
    for message_id in building:
        if not _job_pending(BUILD_JOB.format(message_id)):
            _enqueue_build(message_id)
            report["builds"] += 1

    sending = (
        db.session.execute(select(SendRun.message_id).where(SendRun.state == "sending"))
        .scalars()
        .all()
    )
    for message_id in sending:
        if finish_run_if_done(message_id):
            report["finished"] += 1
    if any(report.values()):
        log.info("send recovery: %s", report)
    return report


# ====================================================================== operator actions


def retry_unknown(message_id: int, *, actor) -> int:
    """Queue the message's ``unknown`` recipients again (an operator's explicit decision,
    R-52: they may have received it already). Returns how many; audited. ``Conflict``
    while the message is not being or done sending, ``NotFound`` without a run."""
    run = db.session.get(SendRun, message_id)
    if run is None:
        raise NotFound(_("This message has not been sent."))
    if run.state == "building":
        raise Conflict(_("The recipients are still being prepared."))
    now = utcnow()
    size = max(int(current_app.config["SEND_BATCH_SIZE"]), 1)
    base = (
        db.session.execute(
            select(func.max(SendBatch.batch_no)).where(SendBatch.message_id == message_id)
        ).scalar()
        or 0
    ) + 1
    changed = db.session.execute(
        text("""
        UPDATE recipients SET status = 'queued', reason = '', finished_at = NULL,
               batch_no = t.batch_no
        FROM (SELECT id, :base + (ROW_NUMBER() OVER (ORDER BY id) - 1) / :size AS batch_no
              FROM recipients WHERE message_id = :m AND status = 'unknown') t
        WHERE recipients.id = t.id AND recipients.status = 'unknown'
    """),
        {"m": message_id, "base": base, "size": size},
    ).rowcount
    if not changed:
        db.session.rollback()
        raise Conflict(_("No recipient of this message has an unknown outcome."))
    batches = _insert_batches(message_id, first_batch_no=base, now=now)
    db.session.execute(
        update(SendRun)
        .where(SendRun.message_id == message_id)
        .values(state="sending", finished_at=None, batches=SendRun.batches + len(batches))
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == "sent")
        .values(status="sending", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        "send.unknown_retried",
        actor=actor,
        target_type="messages",
        target_id=message_id,
        details={"recipients": changed, "batches": len(batches)},
    )
    db.session.commit()
    _enqueue_batches(batches)
    return changed


# ====================================================================== progress


def outcome_counts(message_id: int) -> dict[str, int]:
    """Recipients per status, every status present (0 when none)."""
    from app.models.sending import RECIPIENT_STATUSES

    rows = dict(
        db.session.execute(
            select(Recipient.status, func.count())
            .where(Recipient.message_id == message_id)
            .group_by(Recipient.status)
        ).all()
    )
    return {status: int(rows.get(status, 0)) for status in RECIPIENT_STATUSES}


@dataclass(frozen=True)
class Progress:
    message_id: int
    state: str  # waiting | building | sending | done
    counts: dict
    total: int
    settled: int  # recipients with an outcome (not queued)
    run: SendRun | None

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.state == "done" else 0
        return int(self.settled * 100 / self.total)

    @property
    def done(self) -> bool:
        return self.state == "done"


def progress(message_id: int) -> Progress:
    """Where the sending of a message stands (R-53)."""
    run = db.session.get(SendRun, message_id)
    if run is None:
        return Progress(message_id, "waiting", outcome_counts(message_id), 0, 0, None)
    counts = outcome_counts(message_id)
    total = sum(counts.values())
    settled = total - counts["queued"]
    return Progress(message_id, run.state, counts, total, settled, run)


def total_cost(message_id: int) -> Decimal:
    """What the message cost so far: segments x rate of every recipient that went out."""
    value = db.session.execute(
        select(func.coalesce(func.sum(Recipient.cost), 0)).where(
            Recipient.message_id == message_id,
            Recipient.status.in_(("submitted", "delivered", "failed", "unknown")),
            Recipient.attempts > 0,
        )
    ).scalar()
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


# ====================================================================== the consent inquiry

INQUIRY_TEXT = (
    "尊敬的客户:感谢您成为和兴证券客户,后续如有重要信息将会通过短信方式提醒您,"
    "如愿接收此服务,回复'Y'。不回复将取消短信服务"
)


def inquiry_audience(now: datetime):
    """R-33's audience: undetermined, active customers with a valid mobile whose account
    opened before today (Asia/Shanghai; without an opening date: imported before today)
    and who never got the inquiry. A number that a refused customer also has is left out
    entirely, so the inquiry never reaches a refused customer's phone; of several
    undetermined customers on one number, one gets it and the others are duplicates."""
    from app.timeutil import LOCAL_TZ, local_to_utc, to_local

    today = to_local(now).date()
    today_start = local_to_utc(datetime.combine(today, datetime.min.time(), tzinfo=LOCAL_TZ))
    refused = aliased(Customer)
    duplicate = func.row_number().over(partition_by=Customer.mobile, order_by=Customer.id) > 1
    return select(
        Customer.id.label("customer_id"),
        cast(null(), Integer).label("user_id"),
        Customer.branch_id.label("unit_id"),
        Customer.mobile.label("mobile"),
        Customer.carrier.label("carrier"),
        case((duplicate, "duplicate"), else_=null()).label("reason"),
    ).where(
        Customer.consent == "undetermined",
        Customer.active.is_(True),
        Customer.mobile_status == "valid",
        Customer.inquiry_sent_at.is_(None),
        or_(
            Customer.opened_on < today,
            Customer.opened_on.is_(None) & (Customer.created_at < today_start),
        ),
        ~select(refused.id)
        .where(refused.mobile == Customer.mobile, refused.consent == "refused")
        .exists(),
    )


def inquiry_candidates(now: datetime | None = None) -> int:
    """How many customers the inquiry would go to now."""
    a = inquiry_audience(now or utcnow()).subquery()
    return db.session.execute(select(func.count()).select_from(a)).scalar_one()


def create_consent_inquiry(now: datetime | None = None) -> Message | None:
    """Create today's consent inquiry (R-33) as a system message, approved without a route
    (the inquiry is exempt from approval and from the consent rule), and start it. None
    when nobody is due. The recipients are chosen when the build runs, so a customer who
    refused or agreed meanwhile is not asked; ``inquiry_sent_at`` makes it once."""
    from app.services import org

    now = now or utcnow()
    if not inquiry_candidates(now):
        return None
    market = org.market_unit()
    if market is None:
        raise NotFound(_("There is no Market Business Dept to send the consent inquiry."))
    from app.timeutil import to_local

    message = Message(
        unit_id=market.id,
        author_id=None,
        category="inquiry",
        title=f"客户短信服务确认 {to_local(now).date().isoformat()}",
        body=INQUIRY_TEXT,
        audience='{"kind": "consent_inquiry"}',
        status="approved",
        urgent=False,
        schedule_at=None,
        version=1,
        route="system",
        route_article="Art 27(2)",
        approved_at=now,
        approved_version=1,
        created_at=now,
        updated_at=now,
    )
    db.session.add(message)
    db.session.flush()
    audit.record(
        "message.inquiry_created",
        actor=None,
        target=message,
        details={"candidates": inquiry_candidates(now)},
    )
    db.session.commit()
    if message_settings.quiet_hold(now, False) is None:
        start_message(message.id, now=now)  # else the dispatcher starts it after quiet hours
    return message
