"""Data scope (R-03): which units' data a user may see, and mobile masking.

Branch and ordinary HQ users see their own unit's data; holders of
``data.all_units`` (Market, Finance, auditors, call centre) see every unit's.
Queries over scoped data call ``restrict`` so the rule lives in one place.
"""

from __future__ import annotations

from app.models import User
from app.services.errors import NotInScope


def sees_all_units(user: User) -> bool:
    return user.can("data.all_units")


def visible_unit_ids(user: User) -> set[int] | None:
    """None means every unit; otherwise the set of unit ids the user may see."""
    if sees_all_units(user):
        return None
    return {user.unit_id}


def restrict(query, unit_column, user: User):
    """Add the user's scope to a select whose rows belong to ``unit_column``."""
    ids = visible_unit_ids(user)
    if ids is None:
        return query
    return query.where(unit_column.in_(ids))


def check_unit(user: User, unit_id: int | None) -> None:
    """Raise ``NotInScope`` (answered as 404) when the unit lies outside the user's scope."""
    ids = visible_unit_ids(user)
    if ids is not None and unit_id not in ids:
        raise NotInScope()


def mask_mobile(mobile: str | None) -> str:
    """138****5678: personal-information minimisation for most readers."""
    if not mobile:
        return ""
    digits = mobile[-11:] if len(mobile) >= 11 else mobile
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def show_mobile(user: User, mobile: str | None) -> str:
    """The mobile as this user may see it."""
    if user.can("customer.view_full_mobile"):
        return mobile or ""
    return mask_mobile(mobile)
