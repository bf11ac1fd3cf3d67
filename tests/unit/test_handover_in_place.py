"""Handing over a departed user's customers in their place (R-13, R-31)."""

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Customer, CustomerEvent
from app.services import handover
from app.services.errors import PermissionDenied, ValidationError
from tests.factories import make_customer


def test_superior_hands_over_in_place_of_a_departed_user(app, user, db_backend):
    staff, head = user("bj_staff"), user("bj_head")
    ids = [make_customer(manager=staff).id for _ in range(3)]
    assert not handover.can_deactivate(staff)
    moved = handover.transfer_for_departing(head, staff.id, note="离职")
    db.session.commit()
    assert moved.customer_count == 3 and moved.actor_id == head.id
    rows = db.session.execute(select(Customer).where(Customer.id.in_(ids))).scalars().all()
    assert {(c.manager_id, c.awaiting_assignment) for c in rows} == {(head.id, True)}
    events = (
        db.session.execute(select(CustomerEvent).where(CustomerEvent.handover_id == moved.id))
        .scalars()
        .all()
    )
    assert len(events) == 3 and {e.old_value for e in events} == {"bj_staff"}
    assert handover.can_deactivate(staff)


def test_market_admin_may_act_too(app, user, db_backend):
    staff = user("sh_staff")
    make_customer(manager=staff, branch_code="SH01")
    moved = handover.transfer_for_departing(user("admin"), staff.id, note="调岗未移交")
    assert moved.to_user_id == user("sh_head").id


@pytest.mark.parametrize("actor", ["sh_head", "bj_staff", "callcenter"])
def test_others_may_not(app, user, actor, db_backend):
    staff = user("bj_staff")
    make_customer(manager=staff)
    with pytest.raises(PermissionDenied):
        handover.transfer_for_departing(user(actor), staff.id, note="x")


def test_a_reason_and_customers_are_needed(app, user, db_backend):
    staff, head = user("bj_staff"), user("bj_head")
    with pytest.raises(ValidationError):
        handover.transfer_for_departing(head, staff.id, note="离职")  # no customers
    make_customer(manager=staff)
    with pytest.raises(ValidationError):
        handover.transfer_for_departing(head, staff.id, note="  ")
    assert not handover.can_deactivate(staff)
