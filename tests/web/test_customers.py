"""Customer, handover, verification and call-centre pages through the test client."""

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ConsentEvent, Customer, MobileCheck
from tests.factories import make_customer, make_mobile_check, make_user

# (method, url template, permission). {c} is a BJ01 customer, {k} an open BJ01 check.
ROUTES = [
    ("GET", "/customers/", "customer.view"),
    ("GET", "/customers/{c}", "customer.view"),
    ("POST", "/customers/{c}/consent", "customer.consent_update"),
    ("GET", "/customers/mine", "customer.handover"),
    ("POST", "/customers/mine/review", "customer.handover"),
    ("POST", "/customers/mine/transfer", "customer.handover"),
    ("GET", "/customers/to-assign", "customer.assign"),
    ("POST", "/customers/to-assign", "customer.assign"),
    ("GET", "/customers/checks", "customer.verify_mobile"),
    ("POST", "/customers/checks/{k}", "customer.verify_mobile"),
    # The service decides who beyond customer.view (the superior, the Market admin): 403 allowed.
    ("POST", "/customers/handover/in-place-of/{c}", "customer.view"),
    ("GET", "/callcentre/", "customer.opt_out"),
    ("POST", "/callcentre/opt-out", "customer.opt_out"),
]
USERS = [
    "admin",
    "approver",
    "research_head",
    "finance",
    "callcenter",
    "auditor",
    "bj_staff",
    "bj_head",
    "sh_staff",
]


def test_every_route_of_the_area_checks_a_permission(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("customers.", "callcentre.")):
            view = app.view_functions[rule.endpoint]
            assert getattr(view, "required_permissions", None), rule.endpoint
    covered = {(m, re.sub(r"\{.\}", "x", u)) for m, u, _ in ROUTES}
    rules = {
        (m, re.sub(r"<[^>]+>", "x", r.rule))
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith(("customers.", "callcentre."))
        for m in r.methods
        if m in ("GET", "POST")
    }
    assert rules == covered


@pytest.mark.parametrize("method, url, permission", ROUTES)
@pytest.mark.parametrize("username", USERS)
def test_permission_matrix(app, login_as, user, method, url, permission, username):
    c = make_customer()
    k = make_mobile_check()
    client = login_as(username)
    target = url.format(c=c.id, k=k.id)
    response = client.get(target) if method == "GET" else client.post(target, {})
    if user(username).can(permission):
        allowed = (200, 302, 404, 409, 422) + ((403,) if "in-place-of" in url else ())
        assert response.status_code in allowed, response.status_code
        if method == "GET" and "{c}" not in url:
            assert response.status_code == 200
    else:
        assert response.status_code == 403
    assert db.session.get(Customer, c.id).consent == "agreed"  # empty posts change nothing


def test_anonymous_is_sent_to_login(client):
    response = client.get("/customers/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_other_branch_customer_is_404(app, login_as):
    sh = make_customer(branch_code="SH01", name="上海客户")
    client = login_as("bj_staff")
    assert client.get(f"/customers/{sh.id}").status_code == 404
    assert client.post(f"/customers/{sh.id}/consent", {"state": "refused"}).status_code == 404
    assert db.session.get(Customer, sh.id).consent == "agreed"
    rows = client.get("/customers/?q=上海客户", htmx=True)
    assert rows.status_code == 200 and sh.crm_id not in rows.get_data(as_text=True)
    assert "0 customers" in rows.get_data(as_text=True) or "0 位客户" in rows.get_data(as_text=True)
    assert client.get(f"/customers/?branch={sh.branch_id}").status_code == 404
    client = login_as("sh_staff")
    assert client.get(f"/customers/{sh.id}").status_code == 200


def test_mobiles_are_masked_without_the_permission(app, login_as):
    make_customer(name="王掩码", mobile="13912345678")
    page = login_as("bj_staff").get("/customers/").get_data(as_text=True)
    assert "139****5678" in page and "13912345678" not in page
    page = login_as("admin").get("/customers/?q=王掩码").get_data(as_text=True)
    assert "13912345678" in page


def test_search_is_a_page_or_a_partial(app, login_as):
    make_customer(name="张活跃", mobile="13700001234")
    make_customer(name="李其他")
    client = login_as("bj_staff")
    full = client.get("/customers/?q=1234")
    part = client.get("/customers/?q=1234", htmx=True)
    for response in (full, part):
        assert response.status_code == 200
        assert "HX-Request" in response.headers["Vary"]
    full_html, part_html = full.get_data(as_text=True), part.get_data(as_text=True)
    assert "<html" in full_html and 'hx-push-url="true"' in full_html
    assert "<html" not in part_html and part_html.strip().startswith('<section id="customer-rows"')
    assert "张活跃" in part_html and "李其他" not in part_html
    boosted = client.get("/customers/?q=1234", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)


def test_bad_filter_is_422(app, login_as):
    assert login_as("bj_staff").get("/customers/?consent=maybe").status_code == 422


def test_detail_shows_profile_consent_and_timeline(app, login_as):
    c = make_customer(name="赵详情", tags="基金;港股", consent="undetermined")
    client = login_as("bj_staff")
    client.post(f"/customers/{c.id}/consent", {"state": "refused", "evidence": "柜台要求退订"})
    html = client.get(f"/customers/{c.id}").get_data(as_text=True)
    assert "赵详情" in html and "港股" in html
    assert 'id="consent-panel"' in html and 'id="timeline"' in html
    assert "柜台要求退订" in html and "拒绝接收" in html


def test_staff_marks_refused_then_agreed_with_evidence(app, login_as):
    c = make_customer(consent="agreed")
    client = login_as("bj_staff")
    response = client.post(
        f"/customers/{c.id}/consent", {"state": "refused", "evidence": ""}, htmx=True
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.strip().startswith('<section id="consent-panel"') and 'hx-swap-oob="true"' in html
    assert db.session.get(Customer, c.id).consent == "refused"
    # Agreed without evidence: 422, the panel again with the message, nothing written.
    response = client.post(
        f"/customers/{c.id}/consent", {"state": "agreed", "evidence": " "}, htmx=True
    )
    assert response.status_code == 422
    assert 'id="consent-panel"' in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Customer, c.id).consent == "refused"
    response = client.post(
        f"/customers/{c.id}/consent", {"state": "agreed", "evidence": "签署确认书 No.7"}
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Customer, c.id).consent == "agreed"
    events = (
        db.session.execute(
            select(ConsentEvent.evidence)
            .where(ConsentEvent.customer_id == c.id)
            .order_by(ConsentEvent.id)
        )
        .scalars()
        .all()
    )
    assert events == ["", "签署确认书 No.7"]
    # No-op: a conflict, shown in the panel.
    again = client.post(
        f"/customers/{c.id}/consent", {"state": "agreed", "evidence": "x"}, htmx=True
    )
    assert again.status_code == 409


def test_consent_post_without_csrf_token_is_refused(app, login_as):
    c = make_customer(consent="agreed")
    client = login_as("bj_staff")
    response = client.post(f"/customers/{c.id}/consent", {"state": "refused"}, csrf=False)
    assert response.status_code == 400
    assert db.session.get(Customer, c.id).consent == "agreed"


def test_auditor_sees_but_cannot_change_consent(app, login_as):
    c = make_customer()
    client = login_as("auditor")
    html = client.get(f"/customers/{c.id}").get_data(as_text=True)
    assert "标记为拒绝接收" not in html and 'name="state"' not in html
    assert client.post(f"/customers/{c.id}/consent", {"state": "refused"}).status_code == 403


def test_two_step_handover_through_the_pages(app, login_as, user):
    mine = [make_customer(risk_level="C4") for _ in range(3)]
    other = make_customer(risk_level="C2")
    client = login_as("bj_staff")
    page = client.get("/customers/mine?risk=C4").get_data(as_text=True)
    assert "选择符合当前条件的全部 3 位客户" in page
    review = client.post("/customers/mine/review", {"all": "1", "risk": "C4"})
    html = review.get_data(as_text=True)
    assert review.status_code == 200 and 'name="expected" value="3"' in html
    assert db.session.get(Customer, mine[0].id).manager_id == user("bj_staff").id  # not yet
    done = client.post(
        "/customers/mine/transfer", {"all": "1", "risk": "C4", "expected": "3", "note": "调岗"}
    )
    assert done.status_code == 302
    db.session.expire_all()
    head = user("bj_head")
    assert {db.session.get(Customer, c.id).manager_id for c in mine} == {head.id}
    assert db.session.get(Customer, other.id).manager_id == user("bj_staff").id

    colleague = make_user(username="bj_new", display_name="新来的", unit_code="BJ01")
    client = login_as("bj_head")
    listing = client.get("/customers/to-assign").get_data(as_text=True)
    assert all(c.crm_id in listing for c in mine)
    bad = client.post(
        "/customers/to-assign", {"ids": [str(mine[0].id)], "to_user": str(user("sh_staff").id)}
    )
    assert bad.status_code == 422
    ok = client.post(
        "/customers/to-assign",
        {"ids": [str(mine[0].id), str(mine[1].id)], "to_user": str(colleague.id)},
    )
    assert ok.status_code == 302
    db.session.expire_all()
    assert db.session.get(Customer, mine[0].id).manager_id == colleague.id
    assert db.session.get(Customer, mine[2].id).awaiting_assignment is True


def test_transfer_of_someone_elses_customer_is_refused(app, login_as, user):
    theirs = make_customer(manager=user("bj_head"))
    client = login_as("bj_staff")
    response = client.post("/customers/mine/review", {"ids": [str(theirs.id)]})
    assert response.status_code == 403
    response = client.post("/customers/mine/transfer", {"ids": [str(theirs.id)]})
    assert response.status_code == 403
    assert db.session.get(Customer, theirs.id).manager_id == user("bj_head").id


def test_head_without_superior_cannot_hand_over(app, login_as, user):
    c = make_customer(manager=user("bj_head"))
    client = login_as("bj_head")
    page = client.get("/customers/mine").get_data(as_text=True)
    assert "disabled" in page
    response = client.post("/customers/mine/review", {"ids": [str(c.id)]})
    assert response.status_code == 422


def test_changed_selection_on_transfer_is_409(app, login_as):
    make_customer()
    client = login_as("bj_staff")
    response = client.post("/customers/mine/transfer", {"all": "1", "expected": "5"})
    assert response.status_code == 409


def test_mark_mobile_checked_in_place(app, login_as):
    check = make_mobile_check()
    client = login_as("bj_staff")
    page = client.get("/customers/checks").get_data(as_text=True)
    assert f'id="check-{check.id}"' in page
    empty = client.post(f"/customers/checks/{check.id}", {"note": ""}, htmx=True)
    assert empty.status_code == 422 and f'id="check-{check.id}"' in empty.get_data(as_text=True)
    done = client.post(f"/customers/checks/{check.id}", {"note": "已核实"}, htmx=True)
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and html.strip().startswith(f'<tr id="check-{check.id}"')
    assert "已核实" in html
    assert db.session.get(MobileCheck, check.id).status == "checked"
    assert (
        login_as("sh_staff").post(f"/customers/checks/{check.id}", {"note": "x"}).status_code == 404
    )


def test_call_centre_opts_out_all_customers_of_a_number(app, login_as, user):
    a = make_customer(mobile="13600001111", name="甲")
    b = make_customer(mobile="13600001111", name="乙", branch_code="SH01", consent="undetermined")
    c = make_customer(mobile="13600002222", name="丙")
    client = login_as("callcenter")
    found = client.get("/callcentre/?mobile=136 0000 1111").get_data(as_text=True)
    assert "甲" in found and "乙" in found and "丙" not in found
    assert "136****1111" in found and "13600001111" not in found.replace('value="13600001111"', "")
    response = client.post(
        "/callcentre/opt-out",
        {"mobile": "13600001111", "customer_id": "", "note": "来电要求停发"},
        htmx=True,
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.strip().startswith('<section id="cc-results"')
    db.session.expire_all()
    assert [db.session.get(Customer, x.id).consent for x in (a, b, c)] == [
        "refused",
        "refused",
        "agreed",
    ]
    events = (
        db.session.execute(select(ConsentEvent).where(ConsentEvent.customer_id == a.id))
        .scalars()
        .all()
    )
    assert [(e.channel, e.actor_id, e.evidence) for e in events] == [
        ("call_centre", user("callcenter").id, "来电要求停发")
    ]


def test_call_centre_opts_out_one_customer(app, login_as):
    a = make_customer(mobile="13600003333")
    b = make_customer(mobile="13600003333")
    client = login_as("callcenter")
    response = client.post(
        "/callcentre/opt-out", {"mobile": "13600003333", "customer_id": str(b.id)}
    )
    assert response.status_code == 302
    assert db.session.get(Customer, a.id).consent == "agreed"
    assert db.session.get(Customer, b.id).consent == "refused"
    mismatch = client.post(
        "/callcentre/opt-out", {"mobile": "13600009999", "customer_id": str(a.id)}
    )
    assert mismatch.status_code == 422
    assert db.session.get(Customer, a.id).consent == "agreed"


def test_call_centre_rejects_a_bad_number(app, login_as):
    client = login_as("callcenter")
    assert client.get("/callcentre/?mobile=12345").status_code == 422
    assert client.post("/callcentre/opt-out", {"mobile": ""}).status_code == 422


def test_nav_shows_the_areas_by_permission(app, login_as):
    html = login_as("bj_head").get("/dashboard").get_data(as_text=True)
    for endpoint in ("/customers/", "/customers/mine", "/customers/to-assign", "/customers/checks"):
        assert f'href="{endpoint}"' in html
    assert 'href="/callcentre/"' not in html
    html = login_as("callcenter").get("/dashboard").get_data(as_text=True)
    assert 'href="/callcentre/"' in html and 'href="/customers/mine"' not in html
