"""Permission applications (Appendix 1, R-10 to R-13) and the history of users' roles.

An ``AccessRequest`` is the system's version of the paper form
《和兴证券短信服务管理系统操作权限申请/变更表》. It moves
submitted → signed (unit head) → approved (company) → executed (Market admin), or ends
rejected (at any step, with a reason) or withdrawn (by the applicant). Each step keeps
who and when on the row itself, so the printable form and the timeline need no joins
beyond the users named.

A ``RoleChange`` row records one role added to or removed from a user, by which
request and by whom: the full role history the admin's user page shows.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

# interface_user (R-15, Art 16) is part of the form's model; it is executed by the API
# clients area, and until that exists the service refuses to prepare one.
ACCESS_KINDS = ("new_account", "change", "deregister", "interface_user")
# Kinds that name an existing user (the person the request is about).
KINDS_WITH_USER = ("change", "deregister")
# Kinds that ask for roles.
KINDS_WITH_ROLES = ("new_account", "change", "interface_user")

ACCESS_STATUSES = ("submitted", "signed", "approved", "executed", "rejected", "withdrawn")
# Statuses still waiting for a step; the step each one waits for.
OPEN_STATUSES = ("submitted", "signed", "approved")
NEXT_STEP = {"submitted": "sign", "signed": "approve", "approved": "execute"}

DATA_SCOPES = ("unit", "all")  # own unit / all units (roles carrying data.all_units)


class AccessRequest(db.Model):
    """One permission application (申请/变更表) and its signatures."""

    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="submitted")

    # Who prepared it, for which unit (the applicant's unit is the person's unit).
    applicant_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    applicant_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))

    # The person the request is about.
    person_name: Mapped[str] = mapped_column(String(100))
    person_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    person_post: Mapped[str] = mapped_column(String(100), default="")
    target_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    username: Mapped[str] = mapped_column(String(60), default="")  # desired, new accounts
    superior_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # new accounts

    # What is asked for: role codes joined by spaces, and the data scope they give.
    role_codes: Mapped[str] = mapped_column(String(400), default="")
    data_scope: Mapped[str] = mapped_column(String(10), default="unit")
    reason: Mapped[str] = mapped_column(Text, default="")
    effective_date: Mapped[date] = mapped_column(Date)

    created_at: Mapped[datetime] = mapped_column(DateTime)
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)
    executed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    executed_at: Mapped[datetime | None] = mapped_column(DateTime)
    rejected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rejected_at: Mapped[datetime | None] = mapped_column(DateTime)
    rejected_step: Mapped[str] = mapped_column(String(10), default="")  # sign | approve | execute
    rejection_reason: Mapped[str] = mapped_column(Text, default="")
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime)

    # a deregistration executed after its effective date.
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    # The account created (new account) or changed/deactivated by the execution.
    result_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    applicant = relationship("User", foreign_keys=[applicant_id])
    applicant_unit = relationship("Unit", foreign_keys=[applicant_unit_id])
    person_unit = relationship("Unit", foreign_keys=[person_unit_id])
    target_user = relationship("User", foreign_keys=[target_user_id])
    superior = relationship("User", foreign_keys=[superior_id])
    signed_by = relationship("User", foreign_keys=[signed_by_id])
    approved_by = relationship("User", foreign_keys=[approved_by_id])
    executed_by = relationship("User", foreign_keys=[executed_by_id])
    rejected_by = relationship("User", foreign_keys=[rejected_by_id])
    result_user = relationship("User", foreign_keys=[result_user_id])

    __table_args__ = (
        Index("ix_access_requests_status_unit", "status", "applicant_unit_id"),
        Index("ix_access_requests_kind_status", "kind", "status"),
    )

    @property
    def roles(self) -> list[str]:
        return [c for c in (self.role_codes or "").split() if c]

    @property
    def number(self) -> str:
        """The number printed on the form: year of preparation and id."""
        return f"{self.created_at:%Y}-{self.id:05d}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def next_step(self) -> str | None:
        return NEXT_STEP.get(self.status)

    def __repr__(self) -> str:
        return f"<AccessRequest {self.id} {self.kind} {self.status}>"


class RoleChange(db.Model):
    """One role added to or removed from a user (the role history, item 8)."""

    __tablename__ = "role_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"))
    change: Mapped[str] = mapped_column(String(8))  # added | removed
    request_id: Mapped[int | None] = mapped_column(ForeignKey("access_requests.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime)

    user = relationship("User", foreign_keys=[user_id])
    role = relationship("Role")
    request = relationship(AccessRequest)
    actor = relationship("User", foreign_keys=[actor_id])

    __table_args__ = (Index("ix_role_changes_user_at", "user_id", "at"),)
