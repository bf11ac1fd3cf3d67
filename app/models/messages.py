"""Messages and their approval (R-40 to R-49).

Owned by the messages area (issue 4); the sending area (issue 5) relies on the
columns marked "contract" and must not need others renamed.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

# Category codes. "inquiry" is the system's consent inquiry; "product" an advisory
# product issue.
CATEGORIES = ("notice", "market", "account", "advisory", "internal", "inquiry", "product")
# What people draft on the drafting page; "inquiry" and "product" come from other areas.
DRAFT_CATEGORIES = ("notice", "market", "account", "advisory", "internal")
# Commercial categories end with the opt-out line and need consent "agreed".
COMMERCIAL_CATEGORIES = ("market", "advisory", "product")
# draft -> pending -> approved -> sending -> sent; rejected / cancelled on the side.
MESSAGE_STATUSES = ("draft", "pending", "approved", "rejected", "cancelled", "sending", "sent")
# Statuses in which a message may still be edited or cancelled by its author.
OPEN_STATUSES = ("draft", "pending", "approved", "rejected")

# Approval groups; the group's unit is ``Message.route_unit_id``.
ROUTES = ("unit_heads", "research_reviewers", "research_head", "market_heads")

# One row per transition of a message: who, which version, what, with which comment.
DECISIONS = ("submit", "approve", "reject", "void", "cancel")

RULE_KINDS = ("illegal", "third_party_ad", "advisory_wording", "other")
RULE_ACTIONS = ("block", "warn")
# match_on "text": the pattern is looked for in the message; "links": every link whose domain is
# not one of the company's own (setting ``link_domains``) matches, the pattern is unused.
RULE_MATCH_ON = ("text", "links")

UPLOAD_KINDS = ("crm_id", "mobile")


class Message(db.Model):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)  # contract
    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id"), index=True
    )  # contract: author's unit
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), index=True
    )  # contract (None = system)
    category: Mapped[str] = mapped_column(String(12))  # contract
    title: Mapped[str] = mapped_column(String(200), default="")  # internal subject line
    body: Mapped[str] = mapped_column(
        Text, default=""
    )  # contract: text without signature/opt-out line
    # contract: JSON describing who receives it (see app/services/audience.py)
    audience: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(10), default="draft", index=True)  # contract
    urgent: Mapped[bool] = mapped_column(
        Boolean, default=False
    )  # contract: may send in quiet hours
    schedule_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract: None = on approval
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every edit
    route: Mapped[str] = mapped_column(String(40), default="")  # approver group code (ROUTES)
    route_article: Mapped[str] = mapped_column(String(20), default="")  # e.g. "Art 8"
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_version: Mapped[int | None] = mapped_column(Integer)
    send_started_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract (sending sets)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract (sending sets)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # The unit whose approvers (or Research reviewers) form the route's group.
    route_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    # True when the author was the group's only approver and the route fell back to Market.
    route_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    # Segments of the longest realistic text (placeholders at their longest), kept at save.
    segments: Mapped[int] = mapped_column(SmallInteger, default=1)
    # JSON of the audience preview taken at submission (what the approver is shown).
    audience_summary: Mapped[str] = mapped_column(Text, default="{}")
    # JSON list of the content-rule warnings found at submission.
    rule_warnings: Mapped[str] = mapped_column(Text, default="[]")

    unit = relationship("Unit", foreign_keys=[unit_id])
    route_unit = relationship("Unit", foreign_keys=[route_unit_id])
    author = relationship("User", foreign_keys=[author_id])
    approved_by = relationship("User", foreign_keys=[approved_by_id])
    approvals: Mapped[list[MessageApproval]] = relationship(
        back_populates="message", order_by="MessageApproval.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_messages_status_schedule", "status", "schedule_at"),
        Index("ix_messages_route", "status", "route", "route_unit_id"),
    )

    @property
    def is_commercial(self) -> bool:
        return self.category in COMMERCIAL_CATEGORIES


class MessageApproval(db.Model):
    """One transition of a message in its approval life: submitted, approved, rejected,
    voided by an edit, cancelled. Append-only; the message page shows it as its history."""

    __tablename__ = "message_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(10))  # DECISIONS
    comment: Mapped[str] = mapped_column(Text, default="")
    route: Mapped[str] = mapped_column(String(40), default="")
    route_article: Mapped[str] = mapped_column(String(20), default="")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime)

    message: Mapped[Message] = relationship(back_populates="approvals")
    actor = relationship("User")


class ContentRule(db.Model):
    """A forbidden or suspicious word or pattern (R-43, Art 10), managed by the Market admin."""

    __tablename__ = "content_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    pattern: Mapped[str] = mapped_column(String(200), default="")
    is_regex: Mapped[bool] = mapped_column(Boolean, default=False)
    match_on: Mapped[str] = mapped_column(String(10), default="text")  # RULE_MATCH_ON
    kind: Mapped[str] = mapped_column(String(20))  # RULE_KINDS
    action: Mapped[str] = mapped_column(String(10))  # RULE_ACTIONS
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str] = mapped_column(String(200), default="")  # shown as the rule's name
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    updated_by = relationship("User")


class MessageSetting(db.Model):
    """One message setting as JSON (caps, quiet hours, rates, opt-out line, company
    domains); missing keys take the defaults in ``app.services.message_settings``."""

    __tablename__ = "message_settings"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AudienceUpload(db.Model):
    """An uploaded list of CRM ids or mobiles (R-45): its good values are rows below, its bad
    lines are kept for the report. Usable in an audience once ``confirmed``."""

    __tablename__ = "audience_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    kind: Mapped[str] = mapped_column(String(10))  # UPLOAD_KINDS
    filename: Mapped[str] = mapped_column(String(200), default="")
    total_lines: Mapped[int] = mapped_column(Integer, default=0)
    good_count: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    bad_count: Mapped[int] = mapped_column(Integer, default=0)
    bad_lines: Mapped[str] = mapped_column(Text, default="[]")  # JSON, the first 200
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    @property
    def bad_line_list(self) -> list[dict]:
        return json.loads(self.bad_lines or "[]")


class AudienceUploadRow(db.Model):
    """One good value of an upload, for set-based joins with the customers."""

    __tablename__ = "audience_upload_rows"

    upload_id: Mapped[int] = mapped_column(
        ForeignKey("audience_uploads.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str] = mapped_column(String(32), primary_key=True)


class CappedCustomer(db.Model):
    """A customer another message of ``category`` would take over its frequency cap, up to
    and including the Asia/Shanghai day ``capped_through`` (R-46). Kept by
    ``app.services.frequency_caps``; a cache of what ``recipients`` says, rebuilt from it."""

    __tablename__ = "capped_customers"

    category: Mapped[str] = mapped_column(String(12), primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capped_through: Mapped[date] = mapped_column(Date)

    __table_args__ = (
        Index("ix_capped_customers_through", "category", "capped_through", "customer_id"),
    )


class CapState(db.Model):
    """The cap settings a category's ``capped_customers`` were counted with (None: exempt),
    and the row the category's builds and recounts lock to run one at a time."""

    __tablename__ = "cap_state"

    category: Mapped[str] = mapped_column(String(12), primary_key=True)
    day_cap: Mapped[int | None] = mapped_column(Integer)
    week_cap: Mapped[int | None] = mapped_column(Integer)
    recounted_at: Mapped[datetime | None] = mapped_column(DateTime)
