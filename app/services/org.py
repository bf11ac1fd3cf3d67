"""Units, users and roles (R-01, R-02)."""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from app.models import Role, RolePermission, Unit, User
from app.permissions import PERMISSIONS, STANDARD_ROLES
from app.services import audit
from app.services.auth import hash_password
from app.services.errors import ValidationError


def ensure_roles() -> dict[str, Role]:
    """Create or update the standard roles so they hold exactly the catalogue's permissions.

    Idempotent; returns the roles by code. The caller commits.
    """
    roles = {r.code: r for r in db.session.execute(select(Role)).scalars()}
    for code, (name, name_en, perms) in STANDARD_ROLES.items():
        unknown = set(perms) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"role {code} names unknown permissions {sorted(unknown)}")
        role = roles.get(code)
        if role is None:
            role = Role(code=code, name=name, name_en=name_en)
            db.session.add(role)
            roles[code] = role
        role.name, role.name_en = name, name_en
        have = {row.permission: row for row in role.permission_rows}
        for p in perms:
            if p not in have:
                role.permission_rows.append(RolePermission(permission=p))
        for p, row in have.items():
            if p not in perms:
                role.permission_rows.remove(row)
    db.session.flush()
    return roles


def create_unit(*, code: str, name: str, kind: str, actor: User | None = None, **flags) -> Unit:
    """Add a unit; the caller commits."""
    code = (code or "").strip().upper()
    if not code or not (name or "").strip():
        raise ValidationError("unit code and name are required")
    if kind not in ("hq", "branch"):
        raise ValidationError("unit kind must be hq or branch")
    if db.session.execute(select(Unit.id).where(Unit.code == code)).first():
        raise ValidationError(f"unit code {code} exists")
    unit = Unit(code=code, name=name.strip(), kind=kind, **flags)
    db.session.add(unit)
    db.session.flush()
    audit.record("unit.created", actor=actor, target=unit, details={"code": code, "name": name})
    return unit


def create_user(
    *,
    username: str,
    display_name: str,
    unit: Unit,
    password: str,
    roles: list[Role],
    superior: User | None = None,
    post: str = "",
    must_change_password: bool = True,
    actor: User | None = None,
) -> User:
    """Add a user with hashed password and roles; the caller commits."""
    username = (username or "").strip()
    if not username:
        raise ValidationError("username is required")
    if db.session.execute(select(User.id).where(User.username == username)).first():
        raise ValidationError(f"username {username} exists")
    user = User(
        username=username,
        display_name=display_name,
        unit=unit,
        superior=superior,
        post=post,
        password_hash=hash_password(password),
        must_change_password=must_change_password,
        active=True,
    )
    user.roles = list(roles)
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user.created",
        actor=actor,
        target=user,
        details={
            "unit": unit.code,
            "roles": [r.code for r in roles],
            "superior": superior.username if superior else None,
        },
    )
    return user


def set_mobile(user: User, raw: str, *, actor: User) -> User:
    """Set (or, given nothing, clear) the work mobile a user's internal notices go to
    (R-45); the caller commits. The audit row keeps the numbers' last four digits only."""
    from app.services.customers import MOBILE_RE, normalize_mobile

    mobile = normalize_mobile(raw or "")
    if mobile and not MOBILE_RE.match(mobile):
        raise ValidationError(_("A mobile number is 11 digits starting with 1."))
    if mobile == (user.mobile or ""):
        return user
    before, user.mobile = user.mobile or "", mobile
    audit.record(
        "user.mobile_changed",
        actor=actor,
        target=user,
        details={"before": _tail(before), "after": _tail(mobile)},
    )
    return user


def _tail(mobile: str) -> str:
    return f"…{mobile[-4:]}" if mobile else ""


def unit_approvers(unit_id: int) -> list[User]:
    """Active users of the unit who may approve its messages (head and deputies)."""
    users = db.session.execute(
        select(User).where(User.unit_id == unit_id, User.active.is_(True)).order_by(User.username)
    ).scalars()
    return [u for u in users if u.can("message.approve")]


def market_unit() -> Unit | None:
    return db.session.execute(select(Unit).where(Unit.is_market.is_(True))).scalars().first()


def research_unit() -> Unit | None:
    return db.session.execute(select(Unit).where(Unit.is_research.is_(True))).scalars().first()
