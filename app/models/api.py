"""Interface users and the REST API (R-15, Art 16): API clients, approved templates,
idempotency keys, and what each API send asked for.

- ``MessageTemplate``: message content with placeholders (``{name}``, ``{amount}`` ...)
  and a category. It goes once through the approval route messages take (R-42); an API
  send that fills an approved template needs no further approval. Editing it voids the
  approval. ``TemplateApproval`` is its append-only history.
- ``ApiClient``: the interface user an executed application created, bound to a unit.
  Its key is shown once and stored as a SHA-256 hash; ``key_prefix`` (stored in clear)
  finds the row and lets people recognise the key. A system ``User`` of the client's
  unit holding the ``api_client`` role stands for it as the author of its messages.
- ``ApiClientTemplate``: which approved templates a client may fill.
- ``ApiMessage``: a message an API client created (only it may read it back);
  ``ApiRecipient``: the recipients it listed, with their variables, one row per
  (message, customer), keyed the way the sending area's recipients are.
- ``IdempotencyKey``: the first answer to a request carrying an ``Idempotency-Key``.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

# draft -> pending -> approved; rejected back to the author; an edit of an approved
# template voids the approval and sends it along the route again (like a message, R-42).
TEMPLATE_STATUSES = ("draft", "pending", "approved", "rejected")
TEMPLATE_OPEN_STATUSES = ("draft", "pending", "approved", "rejected")
TEMPLATE_DECISIONS = ("submit", "approve", "reject", "void")
# API sends go to customers: internal notices (to staff) have no template.
TEMPLATE_CATEGORIES = ("notice", "market", "account", "advisory")

RECIPIENT_REFS = ("crm_id", "mobile")


class MessageTemplate(db.Model):
    """Approved content an API client fills with its variables."""

    __tablename__ = "message_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(12))
    content: Mapped[str] = mapped_column(Text, default="")
    # Quiet hours hold a non-urgent send until the morning; urgency is approved too.
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(10), default="draft")
    version: Mapped[int] = mapped_column(Integer, default=1)
    route: Mapped[str] = mapped_column(String(40), default="")
    route_article: Mapped[str] = mapped_column(String(20), default="")
    route_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    route_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    segments: Mapped[int] = mapped_column(SmallInteger, default=1)
    rule_warnings: Mapped[str] = mapped_column(Text, default="[]")
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    unit = relationship("Unit", foreign_keys=[unit_id])
    route_unit = relationship("Unit", foreign_keys=[route_unit_id])
    author = relationship("User", foreign_keys=[author_id])
    approved_by = relationship("User", foreign_keys=[approved_by_id])
    approvals: Mapped[list[TemplateApproval]] = relationship(
        back_populates="template", order_by="TemplateApproval.id", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_message_templates_route", "status", "route", "route_unit_id"),)

    @property
    def is_approved(self) -> bool:
        """Approved, and the approval is of the version that stands (R-42)."""
        return self.status == "approved" and self.approved_version == self.version

    @property
    def warning_list(self) -> list[dict]:
        try:
            return json.loads(self.rule_warnings or "[]")
        except ValueError:
            return []

    def __repr__(self) -> str:
        return f"<MessageTemplate {self.id} v{self.version} {self.status}>"


class TemplateApproval(db.Model):
    """One transition of a template: submitted, approved, rejected, voided by an edit."""

    __tablename__ = "template_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("message_templates.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(10))  # TEMPLATE_DECISIONS
    comment: Mapped[str] = mapped_column(Text, default="")
    route: Mapped[str] = mapped_column(String(40), default="")
    route_article: Mapped[str] = mapped_column(String(20), default="")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime)

    template: Mapped[MessageTemplate] = relationship(back_populates="approvals")
    actor = relationship("User")


class ApiClient(db.Model):
    """An interface user (接口用户): a department system sending through the API."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    # The system account that authors the client's messages (role api_client).
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    access_request_id: Mapped[int | None] = mapped_column(ForeignKey("access_requests.id"))
    key_prefix: Mapped[str] = mapped_column(String(20), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=60)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime)
    rotated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoke_reason: Mapped[str] = mapped_column(Text, default="")
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)

    unit = relationship("Unit")
    user = relationship("User", foreign_keys=[user_id])
    access_request = relationship("AccessRequest")
    created_by = relationship("User", foreign_keys=[created_by_id])
    rotated_by = relationship("User", foreign_keys=[rotated_by_id])
    revoked_by = relationship("User", foreign_keys=[revoked_by_id])
    bindings: Mapped[list[ApiClientTemplate]] = relationship(
        back_populates="client",
        cascade="all, delete-orphan",
        order_by="ApiClientTemplate.template_id",
    )

    def __repr__(self) -> str:
        return f"<ApiClient {self.id} {self.key_prefix}>"


class ApiClientTemplate(db.Model):
    """A template a client may fill (bound by the Market admin)."""

    __tablename__ = "api_client_templates"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("api_clients.id", ondelete="CASCADE"), primary_key=True
    )
    template_id: Mapped[int] = mapped_column(
        ForeignKey("message_templates.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    bound_at: Mapped[datetime] = mapped_column(DateTime)
    bound_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    client: Mapped[ApiClient] = relationship(back_populates="bindings")
    template: Mapped[MessageTemplate] = relationship()
    bound_by = relationship("User")


class ApiMessage(db.Model):
    """A message an API client created: which client, from which template version."""

    __tablename__ = "api_messages"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"))
    template_id: Mapped[int] = mapped_column(ForeignKey("message_templates.id"))
    template_version: Mapped[int] = mapped_column(Integer)
    listed: Mapped[int] = mapped_column(Integer, default=0)  # recipients named in the request
    customers: Mapped[int] = mapped_column(Integer, default=0)  # customers they resolved to
    created_at: Mapped[datetime] = mapped_column(DateTime)

    message = relationship("Message")
    client = relationship(ApiClient)
    template = relationship(MessageTemplate)

    __table_args__ = (Index("ix_api_messages_client", "client_id", "message_id"),)


class ApiRecipient(db.Model):
    """One customer an API send named, as the client named them, with their variables.

    Keyed (message, customer) like the sending area's ``recipients``, which it joins for
    the outcome; ``vars`` is the JSON object of the template's variables for this
    customer, the values the personalised text is filled with.
    """

    __tablename__ = "api_recipients"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # index in the request's list
    ref_kind: Mapped[str] = mapped_column(String(8))  # RECIPIENT_REFS
    ref: Mapped[str] = mapped_column(String(32))  # the CRM id or mobile as given
    vars: Mapped[str] = mapped_column(Text, default="{}")

    __table_args__ = (Index("ix_api_recipients_position", "message_id", "position"),)

    @property
    def values(self) -> dict:
        return json.loads(self.vars or "{}")


class IdempotencyKey(db.Model):
    """The first answer to a request with an ``Idempotency-Key``: a retry gets it again;
    the same key with a different body is a conflict (409). Kept for a day."""

    __tablename__ = "api_idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(SmallInteger)
    response_body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (
        UniqueConstraint("client_id", "key", name="uq_api_idempotency_keys_client_key"),
    )
