"""Data scope and mobile masking (R-03)."""

import pytest
from sqlalchemy import select

from app.models import User
from app.services import scope
from app.services.errors import NotInScope


def test_mask_mobile():
    assert scope.mask_mobile("13812345678") == "138****5678"
    assert scope.mask_mobile("+8613812345678") == "138****5678"
    assert scope.mask_mobile("") == ""
    assert scope.mask_mobile("12345") == "*****"


@pytest.mark.parametrize(
    "username, sees_all",
    [
        ("admin", True),
        ("finance", True),
        ("auditor", True),
        ("callcenter", True),
        ("bj_staff", False),
        ("bj_head", False),
        ("ops_head", False),
        ("research_head", False),
    ],
)
def test_who_sees_every_unit(app, user, username, sees_all, db_backend):
    u = user(username)
    assert scope.sees_all_units(u) is sees_all
    ids = scope.visible_unit_ids(u)
    assert (ids is None) is sees_all
    if not sees_all:
        assert ids == {u.unit_id}


def test_check_unit_raises_not_in_scope(app, user, db_backend):
    bj, sh = user("bj_staff"), user("sh_staff")
    scope.check_unit(bj, bj.unit_id)
    with pytest.raises(NotInScope):
        scope.check_unit(bj, sh.unit_id)
    scope.check_unit(user("admin"), sh.unit_id)


def test_restrict_limits_a_query(app, user, db_backend):
    from app.extensions import db

    bj = user("bj_head")
    rows = db.session.execute(scope.restrict(select(User), User.unit_id, bj)).scalars().all()
    assert {u.username for u in rows} == {"bj_head", "bj_staff"}
    everyone = (
        db.session.execute(scope.restrict(select(User), User.unit_id, user("admin")))
        .scalars()
        .all()
    )
    assert len(everyone) == 15


def test_full_mobile_only_with_permission(app, user, db_backend):
    assert scope.show_mobile(user("admin"), "13812345678") == "13812345678"
    assert scope.show_mobile(user("bj_staff"), "13812345678") == "138****5678"
