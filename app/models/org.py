"""Organisation: units, users, roles and their fine-grained permissions (R-01, R-02)."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, String, Table, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

UNIT_KINDS = ("hq", "branch")

user_roles = Table(
    "user_roles",
    db.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)


class Unit(db.Model):
    """A head-office department (总部部门) or a branch (营业部)."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(10))  # hq | branch
    is_market: Mapped[bool] = mapped_column(Boolean, default=False)
    is_research: Mapped[bool] = mapped_column(Boolean, default=False)
    is_finance: Mapped[bool] = mapped_column(Boolean, default=False)
    is_call_centre: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    users: Mapped[list[User]] = relationship(back_populates="unit", order_by="User.username")

    @property
    def is_branch(self) -> bool:
        return self.kind == "branch"

    def __repr__(self) -> str:
        return f"<Unit {self.code}>"


class Role(db.Model):
    """A named set of permissions; a user may hold several roles."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(400), default="")

    permission_rows: Mapped[list[RolePermission]] = relationship(
        cascade="all, delete-orphan", order_by="RolePermission.permission"
    )
    users: Mapped[list[User]] = relationship(secondary=user_roles, back_populates="roles")

    @property
    def permissions(self) -> set[str]:
        return {row.permission for row in self.permission_rows}


class RolePermission(db.Model):
    __tablename__ = "role_permissions"

    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(60), primary_key=True)


class User(UserMixin, db.Model):
    """A member of staff (or, later, an interface user) who logs into the system."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    superior_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    post: Mapped[str] = mapped_column(String(100), default="")
    # For internal notices to staff; added by migration 0004.
    mobile: Mapped[str] = mapped_column(String(32), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Bumped on password change or deactivation so that old sessions stop working.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    unit: Mapped[Unit] = relationship(back_populates="users")
    superior: Mapped[User | None] = relationship(remote_side=[id])
    roles: Mapped[list[Role]] = relationship(
        secondary=user_roles, back_populates="users", order_by="Role.code"
    )

    @property
    def is_active(self) -> bool:  # Flask-Login: deactivated users cannot log in
        return self.active

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def permissions(self) -> set[str]:
        perms: set[str] = set()
        for role in self.roles:
            perms |= role.permissions
        return perms

    def can(self, *permissions: str) -> bool:
        """True when the user holds every permission named."""
        held = self.permissions
        return all(p in held for p in permissions)

    def can_any(self, *permissions: str) -> bool:
        held = self.permissions
        return any(p in held for p in permissions)

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class LoginEvent(db.Model):
    """One login attempt, successful or not (R-14 login history)."""

    __tablename__ = "login_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    username: Mapped[str] = mapped_column(String(60))
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(40), default="")
