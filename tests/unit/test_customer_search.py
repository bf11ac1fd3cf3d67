"""The scoped customer search and the customer timeline (R-03, issue 3 item 3)."""

from datetime import timedelta

import pytest

from app.extensions import db
from app.models import ConsentEvent, CustomerEvent
from app.services import customers as svc
from app.services.customers import CustomerFilters, normalize_mobile
from app.services.errors import NotInScope, ValidationError
from app.timeutil import utcnow
from tests.factories import make_customer


def _ids(user, **filters):
    page = svc.search(user, CustomerFilters(**filters), per_page=100)
    return {c.id for c in page.rows}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("008613812345678", "13812345678"),
        ("5678", "5678"),
        ("", ""),
    ],
)
def test_normalize_mobile(raw, expected):
    assert normalize_mobile(raw) == expected


def test_search_by_name_crm_id_mobile_and_tail(app, user, db_backend):
    u = user("bj_staff")
    wang = make_customer(name="王小明", crm_id="BJ0000123", mobile="13811112222")
    zhang = make_customer(name="张伟", crm_id="BJ0000456", mobile="13833334444")
    ouyang = make_customer(name="欧阳小明", crm_id="XY9", mobile="13955552222")
    assert _ids(u, q="王小明") == {wang.id}
    assert _ids(u, q="小明") == {wang.id, ouyang.id}  # the end of the name
    assert _ids(u, q="王") == {wang.id}  # surname
    assert _ids(u, q="张伟") == {zhang.id}
    assert _ids(u, q="阳小明") == {ouyang.id}  # three characters: anywhere
    assert _ids(u, q="BJ0000") == {wang.id, zhang.id}  # CRM id prefix
    assert _ids(u, q="bj0000456") == {zhang.id}
    assert _ids(u, q="13811112222") == {wang.id}
    assert _ids(u, q="138 1111 2222") == {wang.id}
    assert _ids(u, q="2222") == {wang.id, ouyang.id}  # last four digits
    assert _ids(u, q="1111") == set()  # not a tail
    assert _ids(u, q="%") == set()  # LIKE wildcards are literal
    assert _ids(u, q="") == {wang.id, zhang.id, ouyang.id}


def test_branch_users_see_only_their_branch(app, user, db_backend):
    bj = make_customer(name="北京客户甲", mobile="13800000001")
    sh = make_customer(name="上海客户甲", mobile="13800000001", branch_code="SH01")
    assert _ids(user("bj_staff"), q="13800000001") == {bj.id}
    assert _ids(user("sh_head"), q="13800000001") == {sh.id}
    assert _ids(user("admin"), q="13800000001") == {bj.id, sh.id}
    assert _ids(user("admin"), q="13800000001", branch_id=sh.branch_id) == {sh.id}
    with pytest.raises(NotInScope):
        svc.search(user("bj_staff"), CustomerFilters(branch_id=sh.branch_id))
    with pytest.raises(NotInScope):
        svc.get_customer(user("bj_staff"), sh.id)
    assert svc.get_customer(user("auditor"), sh.id).id == sh.id


def test_filters(app, user, db_backend):
    u = user("bj_head")
    staff = user("bj_staff")
    a = make_customer(consent="refused", risk_level="C5", tags="基金;港股")
    b = make_customer(consent="agreed", risk_level="C5", tags="基金", manager=u)
    c = make_customer(consent="undetermined", risk_level="C1", active=False)
    assert _ids(u, consent="refused") == {a.id}
    assert _ids(u, risk_level="C5") == {a.id, b.id}
    assert _ids(u, tag="基金") == {a.id, b.id}
    assert _ids(u, tag="港股") == {a.id}
    assert _ids(u, manager_id=staff.id) == {a.id, c.id}
    assert _ids(u, status="closed") == {c.id}
    assert _ids(u, status="active", risk_level="C5", tag="港股") == {a.id}


def test_bad_filter_values_are_rejected(app):
    for args in (
        {"consent": "yes"},
        {"risk": "C9"},
        {"status": "gone"},
        {"branch": "abc"},
        {"manager": "1;drop"},
        {"tag": "x" * 41},
    ):
        with pytest.raises(ValidationError):
            CustomerFilters.from_args(args)
    f = CustomerFilters.from_args({"q": " 王 ", "risk": "c3", "branch": "6"})
    assert (f.q, f.risk_level, f.branch_id) == ("王", "C3", 6)
    assert f.to_args() == {"q": "王", "risk": "C3", "branch": "6"}


def test_pagination_and_capped_count(app, user, db_backend, monkeypatch):
    u = user("bj_staff")
    made = [make_customer() for _ in range(7)]
    page = svc.search(u, CustomerFilters(), page=2, per_page=3)
    assert (page.total, page.pages, page.page, page.capped) == (7, 3, 2, False)
    assert [c.crm_id for c in page.rows] == sorted(c.crm_id for c in made)[3:6]
    assert svc.search(u, CustomerFilters(), page=99, per_page=3).page == 3
    monkeypatch.setattr(svc, "COUNT_CAP", 5)
    total, capped = svc.count_capped(svc.filtered_query(u, CustomerFilters()), cap=5)
    assert (total, capped) == (5, True)


def test_timeline_merges_consent_and_customer_events_newest_first(app, user, db_backend):
    c = make_customer()
    staff = user("bj_staff")
    t0 = utcnow() - timedelta(days=3)
    db.session.add_all(
        [
            CustomerEvent(
                customer_id=c.id,
                kind="mobile_changed",
                old_value="13800000000",
                new_value=c.mobile,
                at=t0,
                note="",
            ),
            ConsentEvent(
                customer_id=c.id,
                old_state="undetermined",
                new_state="agreed",
                channel="sms_reply",
                evidence="Y",
                at=t0 + timedelta(days=1),
            ),
            CustomerEvent(
                customer_id=c.id,
                kind="handed_over",
                old_value="bj_staff",
                new_value="bj_head",
                actor_id=staff.id,
                at=t0 + timedelta(days=2),
                note="",
            ),
        ]
    )
    db.session.commit()
    entries = svc.timeline(c.id)
    assert [e.kind for e in entries] == ["handed_over", "consent", "mobile_changed"]
    assert entries[1].channel == "sms_reply" and entries[1].text == "Y"
    assert entries[0].actor_name == staff.display_name
