"""A person logs in through the real page in headless Chromium."""

from tests.browser.conftest import screenshot


def test_admin_logs_in_and_sees_the_dashboard(page, login):
    page.goto("/login")
    assert page.title().startswith("登录")
    screenshot(page, "login")
    login("admin")
    assert page.locator("h1").inner_text() == "首页"
    nav = page.locator("nav.mainnav").inner_text()
    assert "用户" in nav and "部门" in nav
    screenshot(page, "dashboard-admin")
    assert page.js_errors == []


def test_a_unit_heads_navigation_fits_one_line_at_1280(page, login):
    """bj_head sees a dozen entries (customers, approvals, permission applications,
    replies...): on a 1280 px screen they stand on one line of their own."""
    login("bj_head")
    links = page.locator("nav.mainnav a")
    assert links.count() >= 10
    tops = {round(links.nth(i).bounding_box()["y"]) for i in range(links.count())}
    assert len(tops) == 1, tops
    brand = page.locator("a.brand").bounding_box()
    assert min(tops) > brand["y"] + brand["height"] - 1  # under the brand, not beside it
    screenshot(page, "dashboard-unit-head")
    assert page.js_errors == []


def test_wrong_password_shows_an_error(page):
    page.goto("/login")
    page.fill("input[name=username]", "bj_staff")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit].primary")
    assert "用户名或密码错误" in page.locator(".flash-error").inner_text()
    assert "/login" in page.url


def test_language_switch_to_english(page, login):
    login("bj_staff")
    page.click("button[value=en]")
    page.wait_for_selector("text=Dashboard")
    assert page.locator("h1").inner_text() == "Dashboard"


def test_narrow_screen_folds_the_navigation(page, login):
    login("admin")
    page.set_viewport_size({"width": 380, "height": 800})
    page.goto("/dashboard")
    assert not page.locator("nav.mainnav").is_visible()
    page.click("label.nav-toggle-label")
    assert page.locator("nav.mainnav").is_visible()
    screenshot(page, "dashboard-narrow")
