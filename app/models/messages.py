"""Messages and their approval (R-40 to R-49).

Owned by the messages area (issue 4); the sending area (issue 5) relies on the
columns marked "contract" and must not need others renamed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

# Category codes. "inquiry" is the system's consent inquiry; "product" an advisory
# product issue.
CATEGORIES = ("notice", "market", "account", "advisory", "internal", "inquiry", "product")
# Commercial categories end with the opt-out line and need consent "agreed".
COMMERCIAL_CATEGORIES = ("market", "advisory", "product")
# draft -> pending -> approved -> sending -> sent; rejected / cancelled on the side.
MESSAGE_STATUSES = ("draft", "pending", "approved", "rejected", "cancelled", "sending", "sent")


class Message(db.Model):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)  # contract
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)  # contract: author's unit
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)  # contract (None = system)
    category: Mapped[str] = mapped_column(String(12))  # contract
    title: Mapped[str] = mapped_column(String(200), default="")  # internal subject line
    body: Mapped[str] = mapped_column(Text, default="")  # contract: text without signature/opt-out line
    # contract: JSON describing who receives it (see app/services/audience.py)
    audience: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(10), default="draft", index=True)  # contract
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)  # contract: may send in quiet hours
    schedule_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract: None = on approval
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every edit
    route: Mapped[str] = mapped_column(String(40), default="")  # approver group code
    route_article: Mapped[str] = mapped_column(String(20), default="")  # e.g. "Art 8"
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_version: Mapped[int | None] = mapped_column(Integer)
    send_started_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract (sending sets)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)  # contract (sending sets)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    unit = relationship("Unit")
    author = relationship("User", foreign_keys=[author_id])
    approved_by = relationship("User", foreign_keys=[approved_by_id])

    __table_args__ = (Index("ix_messages_status_schedule", "status", "schedule_at"),)
