"""The in-place handover through the web form."""

from app.extensions import db
from app.services import handover
from tests.factories import make_customer


def test_admin_hands_over_from_the_form(client, login_as, user):
    staff = user("sz_staff")
    make_customer(manager=staff, branch_code="SZ01")
    login_as("admin")
    response = client.post(
        f"/customers/handover/in-place-of/{staff.id}", {"note": "已离职", "next": "/dashboard"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"
    db.session.expire_all()
    assert handover.can_deactivate(user("sz_staff"))


def test_missing_reason_is_422_and_moves_nothing(client, login_as, user):
    staff = user("sz_staff")
    make_customer(manager=staff, branch_code="SZ01")
    login_as("sz_head")
    assert (
        client.post(f"/customers/handover/in-place-of/{staff.id}", {"note": ""}).status_code == 422
    )
    db.session.expire_all()
    assert not handover.can_deactivate(user("sz_staff"))


def test_another_branch_head_gets_403(client, login_as, user):
    staff = user("sz_staff")
    make_customer(manager=staff, branch_code="SZ01")
    login_as("bj_head")
    assert (
        client.post(f"/customers/handover/in-place-of/{staff.id}", {"note": "x"}).status_code == 403
    )
