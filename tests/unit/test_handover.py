"""Customer handover in two steps (R-31) and the deactivation guard (R-13)."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditLog, Customer, CustomerEvent, Handover
from app.services import handover
from app.services.customers import CustomerFilters
from app.services.errors import Conflict, PermissionDenied, ValidationError
from tests.factories import make_customer, make_user


def _manager(customer_id):
    c = db.session.get(Customer, customer_id)
    return c.manager_id, c.awaiting_assignment


def _counts():
    return (
        db.session.execute(select(func.count(Handover.id))).scalar_one(),
        db.session.execute(select(func.count(CustomerEvent.id))).scalar_one(),
    )


def test_transfer_selected_then_assign(app, user, db_backend):
    staff, head = user("bj_staff"), user("bj_head")
    mine = [make_customer() for _ in range(3)]
    kept = make_customer()
    h = handover.transfer_to_superior(
        staff, customer_ids=[mine[0].id, mine[1].id, mine[2].id], note="调岗"
    )
    db.session.commit()
    assert (h.kind, h.from_user_id, h.to_user_id, h.actor_id, h.customer_count, h.note) == (
        "transfer",
        staff.id,
        head.id,
        staff.id,
        3,
        "调岗",
    )
    for c in mine:
        assert _manager(c.id) == (head.id, True)
    assert _manager(kept.id) == (staff.id, False)
    events = (
        db.session.execute(select(CustomerEvent).where(CustomerEvent.handover_id == h.id))
        .scalars()
        .all()
    )
    assert sorted(e.customer_id for e in events) == sorted(c.id for c in mine)
    assert {(e.kind, e.old_value, e.new_value, e.actor_id) for e in events} == {
        ("handed_over", "bj_staff", "bj_head", staff.id)
    }
    assert handover.awaiting_count(head) == 3
    audit_row = db.session.execute(
        select(AuditLog).where(AuditLog.action == "customer.handed_over")
    ).scalar_one()
    assert audit_row.target_type == "handovers" and '"customers": 3' in audit_row.details

    newcomer = make_user(username="bj_new", display_name="新客户经理", unit_code="BJ01")
    a = handover.assign(head, newcomer.id, all_matching=True, filters=CustomerFilters())
    db.session.commit()
    assert (a.kind, a.from_user_id, a.to_user_id, a.customer_count) == (
        "assign",
        head.id,
        newcomer.id,
        3,
    )
    for c in mine:
        assert _manager(c.id) == (newcomer.id, False)
    assert handover.awaiting_count(head) == 0
    kinds = (
        db.session.execute(
            select(CustomerEvent.kind)
            .where(CustomerEvent.customer_id == mine[0].id)
            .order_by(CustomerEvent.id)
        )
        .scalars()
        .all()
    )
    assert kinds == ["handed_over", "assigned"]


def test_transfer_all_matching_a_filter_beyond_one_page(app, user, db_backend):
    staff = user("bj_staff")
    c3 = [make_customer(risk_level="C3") for _ in range(60)]
    c5 = make_customer(risk_level="C5")
    f = CustomerFilters(risk_level="C3")
    h = handover.transfer_to_superior(staff, all_matching=True, filters=f, expected_count=60)
    db.session.commit()
    assert h.customer_count == 60
    assert all(_manager(c.id)[1] for c in c3)
    assert _manager(c5.id) == (staff.id, False)


def test_transfer_refuses_customers_not_yours(app, user, db_backend):
    staff = user("bj_staff")
    mine = make_customer()
    other_user = make_user(unit_code="BJ01", superior=user("bj_head"))
    theirs = make_customer(manager=other_user)
    before = _counts()
    with pytest.raises(PermissionDenied):
        handover.transfer_to_superior(staff, customer_ids=[mine.id, theirs.id])
    db.session.rollback()
    assert _counts() == before
    assert _manager(mine.id) == (staff.id, False)
    assert _manager(theirs.id) == (other_user.id, False)


def test_transfer_refuses_without_superior_or_selection(app, user, db_backend):
    head = user("bj_head")  # heads have no superior in the demo organisation
    c = make_customer(manager=head)
    with pytest.raises(ValidationError):
        handover.transfer_to_superior(head, customer_ids=[c.id])
    with pytest.raises(ValidationError):
        handover.transfer_to_superior(user("bj_staff"), customer_ids=[])
    with pytest.raises(ValidationError):
        handover.transfer_to_superior(user("bj_staff"), customer_ids=["x"])
    with pytest.raises(ValidationError):  # nothing matches
        handover.transfer_to_superior(
            user("bj_staff"), all_matching=True, filters=CustomerFilters(q="不存在的名字")
        )
    assert _counts() == (0, 0)


def test_transfer_refuses_a_deactivated_superior(app, user, db_backend):
    staff = user("bj_staff")
    c = make_customer()
    staff.superior.active = False
    db.session.commit()
    with pytest.raises(ValidationError):
        handover.transfer_to_superior(staff, customer_ids=[c.id])
    assert _manager(c.id) == (staff.id, False)


def test_changed_selection_is_a_conflict(app, user, db_backend):
    staff = user("bj_staff")
    make_customer()
    make_customer()
    with pytest.raises(Conflict):
        handover.transfer_to_superior(
            staff, all_matching=True, filters=CustomerFilters(), expected_count=1
        )
    assert _counts() == (0, 0)


def test_assign_refuses_other_unit_inactive_and_foreign_customers(app, user, db_backend):
    staff, head = user("bj_staff"), user("bj_head")
    c = make_customer()
    handover.transfer_to_superior(staff, customer_ids=[c.id])
    db.session.commit()
    before = _counts()
    with pytest.raises(ValidationError):  # another unit
        handover.assign(head, user("sh_staff").id, customer_ids=[c.id])
    gone = make_user(unit_code="BJ01")
    gone.active = False
    db.session.commit()
    with pytest.raises(ValidationError):  # inactive
        handover.assign(head, gone.id, customer_ids=[c.id])
    with pytest.raises(ValidationError):  # nobody chosen
        handover.assign(head, None, customer_ids=[c.id])
    not_waiting = make_customer()
    with pytest.raises(PermissionDenied):  # not in the head's "to assign" list
        handover.assign(head, staff.id, customer_ids=[not_waiting.id])
    with pytest.raises(PermissionDenied):  # staff may not assign at all
        handover.assign(staff, staff.id, customer_ids=[c.id])
    db.session.rollback()
    assert _counts() == before
    assert _manager(c.id) == (head.id, True)


def test_can_deactivate(app, user, db_backend):
    staff, head = user("bj_staff"), user("bj_head")
    assert handover.can_deactivate(user("sh_staff"))
    c = make_customer()
    check = handover.can_deactivate(staff)
    assert not check and check.customers == 1 and "1" in check.reason
    handover.transfer_to_superior(staff, customer_ids=[c.id])
    db.session.commit()
    assert handover.can_deactivate(staff)
    assert not handover.can_deactivate(head.id)  # waiting customers count for the superior
    handover.assign(head, make_user(unit_code="BJ01").id, customer_ids=[c.id])
    db.session.commit()
    assert handover.can_deactivate(head)
    closed = make_customer(active=False)
    assert not handover.can_deactivate(staff)  # closed customers still need a handover
    assert closed.manager_id == staff.id
