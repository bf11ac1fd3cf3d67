"""Plain factories for test data: ``make_<model>(**overrides)``."""

from __future__ import annotations

import itertools

from sqlalchemy import select

from app.extensions import db
from app.models import Role, Unit, User
from app.services import org

_seq = itertools.count(1)


def role(code: str) -> Role:
    return db.session.execute(select(Role).where(Role.code == code)).scalar_one()


def unit(code: str) -> Unit:
    return db.session.execute(select(Unit).where(Unit.code == code)).scalar_one()


def make_unit(**overrides) -> Unit:
    n = next(_seq)
    values = {"code": f"U{n:03d}", "name": f"测试部门{n}", "kind": "branch"}
    values.update(overrides)
    u = org.create_unit(**values)
    db.session.commit()
    return u


def make_user(*, roles=("staff_sender",), unit_code="BJ01", password="Initial-Pass-1",
              must_change_password=False, **overrides) -> User:
    n = next(_seq)
    values = {"username": f"user{n}", "display_name": f"测试用户{n}"}
    values.update(overrides)
    u = org.create_user(
        unit=unit(unit_code),
        password=password,
        roles=[role(r) for r in roles],
        must_change_password=must_change_password,
        **values,
    )
    db.session.commit()
    return u
