"""Customers, their consent and their history (R-20 to R-35)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

CONSENT_STATES = ("agreed", "refused", "undetermined")  # 同意接收 / 拒绝接收 / 未确定
CONSENT_CHANNELS = ("sms_reply", "call_centre", "branch_staff", "system")
RISK_LEVELS = ("C1", "C2", "C3", "C4", "C5")
MOBILE_STATUSES = ("valid", "invalid", "doubtful")


class Customer(db.Model):
    """A customer of a branch, as the CRM describes them, plus our consent state.

    ``mobile`` holds the 11-digit national number when it parses, else what the CRM
    sent (then ``mobile_status`` is invalid or doubtful). ``mobile_tail`` is its last
    four digits, indexed for the search by tail.
    """

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    crm_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    mobile: Mapped[str] = mapped_column(String(32), index=True)
    mobile_tail: Mapped[str] = mapped_column(String(4))
    mobile_status: Mapped[str] = mapped_column(String(10), default="valid")
    carrier: Mapped[str] = mapped_column(String(20), default="")
    branch_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Set when a handover moved the customer to the superior, until they assign it.
    awaiting_assignment: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_on: Mapped[date | None] = mapped_column(Date)
    risk_level: Mapped[str] = mapped_column(String(2), default="")
    tags: Mapped[str] = mapped_column(String(400), default="")  # ';'-joined, as in the CRM
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    consent: Mapped[str] = mapped_column(String(12), default="undetermined")
    consent_changed_at: Mapped[datetime | None] = mapped_column(DateTime)
    inquiry_sent_at: Mapped[datetime | None] = mapped_column(DateTime)  # R-33, once
    row_hash: Mapped[str] = mapped_column(String(40), default="")  # of the CRM fields
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    branch = relationship("Unit", foreign_keys=[branch_id])
    manager = relationship("User", foreign_keys=[manager_id])

    __table_args__ = (
        Index("ix_customers_branch_consent", "branch_id", "consent"),
        Index("ix_customers_manager", "manager_id", "awaiting_assignment"),
        Index("ix_customers_branch_tail", "branch_id", "mobile_tail"),
        Index("ix_customers_branch_risk", "branch_id", "risk_level"),
        Index("ix_customers_mobile_tail", "mobile_tail"),
        # PostgreSQL only (built by migration 0002): name fragments and CRM-id prefixes.
        Index(
            "ix_customers_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_customers_crm_id_pattern",
            "crm_id",
            postgresql_ops={"crm_id": "varchar_pattern_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    @property
    def tag_list(self) -> list[str]:
        return [t for t in (self.tags or "").split(";") if t]


class CustomerTag(db.Model):
    """One preference tag of a customer, for set-based audience queries (R-24, R-45)."""

    __tablename__ = "customer_tags"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)

    __table_args__ = (Index("ix_customer_tags_tag", "tag", "customer_id"),)


class ConsentEvent(db.Model):
    """One change of a customer's consent: immutable (R-32); triggers refuse UPDATE/DELETE."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    old_state: Mapped[str] = mapped_column(String(12))
    new_state: Mapped[str] = mapped_column(String(12))
    channel: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    evidence: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime, index=True)

    actor = relationship("User")


class CustomerEvent(db.Model):
    """Other history of a customer: mobile changes, handovers, closing (R-21, R-31).

    ``kind``: mobile_changed, manager_changed, handed_over, assigned, closed, reopened,
    branch_changed, mobile_checked.
    """

    __tablename__ = "customer_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    old_value: Mapped[str] = mapped_column(String(200), default="")
    new_value: Mapped[str] = mapped_column(String(200), default="")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    handover_id: Mapped[int | None] = mapped_column(ForeignKey("handovers.id"), index=True)
    import_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    note: Mapped[str] = mapped_column(String(400), default="")
    at: Mapped[datetime] = mapped_column(DateTime, index=True)

    actor = relationship("User")


class Handover(db.Model):
    """One handover step (R-31): ``transfer`` from a user to their superior, or ``assign``
    from the superior to a user of the unit; the customers moved are its events."""

    __tablename__ = "handovers"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # transfer | assign
    from_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    to_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    customer_count: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(String(400), default="")
    at: Mapped[datetime] = mapped_column(DateTime, index=True)

    from_user = relationship("User", foreign_keys=[from_user_id])
    to_user = relationship("User", foreign_keys=[to_user_id])
    actor = relationship("User", foreign_keys=[actor_id])


class MobileCheck(db.Model):
    """A doubtful or invalid mobile on the branch's verification list (R-23, Art 24)."""

    __tablename__ = "mobile_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    mobile: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(20))  # invalid | doubtful
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | checked
    note: Mapped[str] = mapped_column(String(400), default="")
    checked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    customer = relationship("Customer")
    checked_by = relationship("User")

    __table_args__ = (Index("ix_mobile_checks_branch_status", "branch_id", "status"),)


class SharedMobile(db.Model):
    """A mobile number more than one customer has (family accounts, a shared desk phone).
    Kept by the CRM import, the only writer of customers' numbers, for the audience
    preview's duplicate count (R-45); see ``app.services.customers.recount_shared_mobiles``."""

    __tablename__ = "shared_mobiles"

    mobile: Mapped[str] = mapped_column(String(32), primary_key=True)


class SharedMobileState(db.Model):
    """When ``shared_mobiles`` was counted: the highest customer id then. A customer added
    since (another id) makes it stale, and readers count from ``customers`` instead."""

    __tablename__ = "shared_mobiles_state"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    max_customer_id: Mapped[int] = mapped_column(Integer)
    recounted_at: Mapped[datetime] = mapped_column(DateTime)
