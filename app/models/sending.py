"""Sending: one row per recipient, the batches workers claim, carrier reports and replies
(R-33, R-34, R-50 to R-53, R-80a).

``recipients`` is the one table that grows to hundreds of millions of rows. It has no
foreign-key constraints on purpose: the dispatcher writes it set-based from ids that
exist, and per-row RI triggers would cost more than the 1,000,000-row INSERT ... SELECT
itself. Its three indexes serve the only access paths: a message's rows by outcome
(progress, lists, batch claims), and a customer's rows by time (frequency cap, the
customer page, reply correlation). docs/sending.md has the partitioning plan.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer, "sqlite")

# queued -> submitted -> delivered | failed; suppressed at build time; unknown when the
# outcome of a submission was lost (a crash or a timeout after the request went out).
RECIPIENT_STATUSES = ("queued", "submitted", "delivered", "failed", "suppressed", "unknown")
FINAL_STATUSES = ("delivered", "failed", "suppressed")
# Outcomes a send is "done" with: nothing more will happen without an operator.
SETTLED_STATUSES = ("submitted", "delivered", "failed", "suppressed", "unknown")

RUN_STATES = ("building", "sending", "done")
BATCH_STATES = ("queued", "sending", "done")


class SendRun(db.Model):
    """The sending of one message: the exact text that went out, and where it stands.

    Created when the dispatcher starts the message (status approved -> sending); the text
    is frozen here with the signature and opt-out line, so the record of what was sent
    survives later edits of templates or settings (R-80a).
    """

    __tablename__ = "send_runs"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="building", index=True)
    gateway: Mapped[str] = mapped_column(String(12))
    sender: Mapped[str] = mapped_column(String(21), default="")
    text: Mapped[str] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(SmallInteger, default=1)
    total: Mapped[int] = mapped_column(Integer, default=0)
    eligible: Mapped[int] = mapped_column(Integer, default=0)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    built_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    message = relationship("Message")


class SendBatch(db.Model):
    """A slice of a message's queued recipients, one `send` job: the recipients of the
    message with this ``batch_no``, whose ids lie within ``first_id``..``last_id``.

    A worker claims a batch by a conditional UPDATE that sets ``claim_token``; while it
    works it renews ``heartbeat_at`` and records the chunk it is submitting in
    ``inflight_lo``..``inflight_hi`` *before* the requests go out. If the worker dies, the
    recipients of that chunk still queued are the ones whose outcome was lost: they become
    ``unknown``; the rest stay queued and are sent by whoever takes the batch over.
    """

    __tablename__ = "send_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(Integer)
    batch_no: Mapped[int] = mapped_column(Integer)
    first_id: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    claim_token: Mapped[str] = mapped_column(String(32), default="")
    claims: Mapped[int] = mapped_column(SmallInteger, default=0)
    inflight_lo: Mapped[int | None] = mapped_column(BigInteger)
    inflight_hi: Mapped[int | None] = mapped_column(BigInteger)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime)
    not_before: Mapped[datetime | None] = mapped_column(DateTime)  # transient-error backoff
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    done_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_send_batches_status", "status", "enqueued_at"),
        Index("uq_send_batches_message_batch", "message_id", "batch_no", unique=True),
    )


class Recipient(db.Model):
    """One number a message goes to, and what became of it (R-52)."""

    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer)  # internal notices to staff
    unit_id: Mapped[int | None] = mapped_column(Integer)  # the customer's branch / user's unit
    mobile: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(200), default="")
    segments: Mapped[int] = mapped_column(SmallInteger, default=0)
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal("0"))
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    batch_no: Mapped[int | None] = mapped_column(Integer)  # SendBatch.batch_no; None if suppressed
    gateway_ref: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)  # delivered / failed / unknown

    customer = relationship(
        "Customer", primaryjoin="foreign(Recipient.customer_id) == Customer.id", viewonly=True
    )
    user = relationship("User", primaryjoin="foreign(Recipient.user_id) == User.id", viewonly=True)

    __table_args__ = (
        Index("ix_recipients_message_status", "message_id", "status", "id"),
        Index("ix_recipients_customer", "customer_id", "created_at"),
    )


class DeliveryReport(db.Model):
    """A final carrier report (delivered / failed), kept as evidence and for idempotency.

    ``dedupe_key`` is unique: the same report delivered twice is stored once and changes
    nothing the second time. Reports naming no recipient we know are kept with
    ``recipient_id`` NULL, so nothing the carrier sends is lost.
    """

    __tablename__ = "delivery_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    recipient_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    gateway: Mapped[str] = mapped_column(String(12))
    outcome: Mapped[str] = mapped_column(String(10))  # delivered | failed
    code: Mapped[str] = mapped_column(String(20), default="")
    detail: Mapped[str] = mapped_column(String(500), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)


REPLY_INTENTS = ("agree", "refuse", "other")
# auto: applied without a person (a refusal, or an agreement from a number one customer
# has); open: in the branch's inbox; handled: a person dealt with it.
REPLY_STATUSES = ("auto", "open", "handled")


class InboundReply(db.Model):
    """A customer's SMS to us (R-34), applied automatically or waiting in a reply inbox.

    ``unit_id`` is the branch whose inbox shows it (NULL: no customer has the number; the
    Market dept's staff, who see every unit, handle those).
    """

    __tablename__ = "inbound_replies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    gateway: Mapped[str] = mapped_column(String(12))
    mobile: Mapped[str] = mapped_column(String(32), index=True)
    to_number: Mapped[str] = mapped_column(String(32), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    intent: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8))
    # What was done, as a code: refused:<n>, agreed, agreed_already, agreed_for:<customer id>,
    # unknown_number, shared_number, needs_person, handled (replies.outcome_label).
    outcome: Mapped[str] = mapped_column(String(200), default="")
    unit_id: Mapped[int | None] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(Integer)  # when exactly one matched
    customers_matched: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[int | None] = mapped_column(Integer)  # the last message to the number
    received_at: Mapped[datetime] = mapped_column(DateTime)
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    handled_at: Mapped[datetime | None] = mapped_column(DateTime)

    handled_by = relationship("User")
    notes: Mapped[list[ReplyNote]] = relationship(
        order_by="ReplyNote.id", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_inbound_replies_inbox", "status", "unit_id", "received_at"),)


class ReplyNote(db.Model):
    """A note staff add to a reply while handling it (Art 26(2))."""

    __tablename__ = "reply_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    reply_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("inbound_replies.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime)

    author = relationship("User")


class SimulatedSms(db.Model):
    """What the carrier simulator "sent" (SMS_GATEWAY=simulator): the handset's inbox."""

    __tablename__ = "simulated_sms"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(BigInteger, index=True)
    mobile: Mapped[str] = mapped_column(String(32), index=True)
    sender: Mapped[str] = mapped_column(String(21), default="")
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="sent")  # sent | delivered | failed
    created_at: Mapped[datetime] = mapped_column(DateTime)
    reported_at: Mapped[datetime | None] = mapped_column(DateTime)
