"""CSRF, CSP, error pages, and the permission check on every route (R-81)."""

import re

import pytest

from app.services.demo import DEMO_USERS

PUBLIC_ENDPOINTS = {
    "static",
    "main.index",
    "main.set_language",
    "main.healthz",
    "auth.login",
    "auth.login_post",
    "auth.logout",
}
# Areas authenticated by something other than a staff session (tokens, signatures, API keys).
NON_SESSION_PREFIXES = ("webhooks.", "api.")


def _protected_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint.startswith(NON_SESSION_PREFIXES):
            continue
        yield rule


def _url(rule):
    values = {arg: 1 for arg in rule.arguments}
    path = rule.rule
    for arg in rule.arguments:
        path = re.sub(rf"<(?:[^:<>]+:)?{arg}>", str(values[arg]), path)
    return path


def test_every_route_declares_its_permissions(app):
    missing = [
        rule.endpoint
        for rule in _protected_rules(app)
        if not hasattr(app.view_functions[rule.endpoint], "required_permissions")
    ]
    assert missing == [], "routes without permission_required/login_required"


def test_anonymous_users_are_sent_to_login(app, client):
    for rule in _protected_rules(app):
        if "GET" in rule.methods:
            response = client.get(_url(rule))
            assert response.status_code == 302, rule.rule
            assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("username", [u[0] for u in DEMO_USERS])
def test_each_role_gets_403_exactly_where_it_lacks_permission(
    app, client, login_as, user, username
):
    login_as(username)
    holder = user(username)
    for rule in _protected_rules(app):
        needed = app.view_functions[rule.endpoint].required_permissions
        allowed = holder.can(*needed)
        if "GET" in rule.methods:
            status = client.get(_url(rule)).status_code
            if allowed:
                assert status != 403, f"{username} refused {rule.rule}"
                assert status < 500, f"{username} broke {rule.rule}"
            else:
                assert status == 403, f"{username} allowed {rule.rule}"
        elif "POST" in rule.methods and not allowed:
            assert client.post(_url(rule), {}).status_code == 403, (
                f"{username} may POST {rule.rule}"
            )


def test_post_without_csrf_token_is_refused(client, login_as, user):
    login_as("admin")
    u = user("bj_staff")
    response = client.post(f"/admin/users/{u.id}/unlock", {}, csrf=False)
    assert response.status_code == 400
    assert "安全令牌" in response.get_data(as_text=True)


def test_post_with_a_wrong_csrf_token_is_refused(client, login_as):
    login_as("bj_staff")
    client.token = "forged"
    assert client.post("/logout").status_code == 400
    assert client.get("/dashboard").status_code == 200  # still logged in: nothing happened


def test_login_form_needs_csrf_too(client):
    response = client.post("/login", {"username": "admin", "password": "Demo-2026"}, csrf=False)
    assert response.status_code == 400


def test_security_headers(client, login_as):
    login_as("admin")
    response = client.get("/dashboard")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_or_foreign_scripts(app, client, login_as):
    login_as("admin")
    for url in ["/login", "/dashboard", "/admin/users", "/admin/units", "/admin/roles"]:
        html = client.get(url).get_data(as_text=True)
        for tag in re.findall(r"<script[^>]*>.*?</script>", html, re.S):
            assert 'src="/static/' in tag and tag.endswith("></script>"), tag
        assert not re.search(r"\son[a-z]+=", html), url
        assert "hx-on" not in html


def test_csrf_token_travels_with_htmx(client, login_as):
    login_as("bj_staff")
    html = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'<body[^>]+hx-headers=\'\{"X-CSRFToken": "[^"]+"\}\'', html)


def test_404_page(client, login_as):
    login_as("bj_staff")
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "页面不存在" in response.get_data(as_text=True)


def test_403_page(client, login_as):
    login_as("bj_staff")
    response = client.get("/admin/users")
    assert response.status_code == 403
    assert "无权" in response.get_data(as_text=True)


def test_htmx_errors_are_fragments(client, login_as):
    login_as("bj_staff")
    response = client.get("/admin/users", htmx=True)
    assert response.status_code == 403
    assert "<html" not in response.get_data(as_text=True)


def test_500_page_is_friendly_and_leaks_nothing(app, client, login_as):
    def broken():
        raise RuntimeError("secret internals")

    app.add_url_rule("/boom-for-test", "boom_for_test", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    login_as("bj_staff")
    response = client.get("/boom-for-test")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "系统出现错误" in body and "secret internals" not in body
