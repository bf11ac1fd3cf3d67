"""The navigation: each entry shows only to users holding its permission (R-81)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user


@dataclass(frozen=True)
class NavEntry:
    endpoint: str
    label: object
    permissions: tuple[str, ...]  # any one of them shows the entry
    badge: str | None = None  # name of a badge function in BADGES


NAV: list[NavEntry] = [
    NavEntry("main.dashboard", _l("Dashboard"), ()),
    NavEntry("customers.list_customers", _l("Customers"), ("customer.view",)),
    NavEntry("customers.list_mine", _l("My customers"), ("customer.handover",)),
    NavEntry(
        "customers.list_to_assign", _l("To assign"), ("customer.assign",), "customers_to_assign"
    ),
    NavEntry(
        "customers.list_checks",
        _l("Mobile checks"),
        ("customer.verify_mobile",),
        "customers_checks",
    ),
    NavEntry("callcentre.find_customers", _l("Opt-out by phone"), ("customer.opt_out",)),
    NavEntry("imports.list_runs", _l("CRM import"), ("customer.import",)),
    NavEntry("messages.list_messages", _l("Messages"), ("message.view",)),
    NavEntry(
        "inbox.list_pending",
        _l("Approvals"),
        ("message.approve", "message.review_advisory"),
        "inbox",
    ),
    NavEntry(
        "templates.list_templates",
        _l("Templates"),
        ("message.draft", "message.approve", "message.review_advisory", "admin.users"),
        "templates_pending",
    ),
    NavEntry("rules.list_rules", _l("Content rules"), ("admin.rules",)),
    NavEntry("admin.list_units", _l("Units"), ("admin.units", "admin.users")),
    NavEntry("admin.list_users", _l("Users"), ("admin.users",)),
    NavEntry("admin.list_roles", _l("Roles"), ("admin.users",)),
    NavEntry("api_clients.list_clients", _l("API clients"), ("admin.users",)),
    NavEntry("audit.list_entries", _l("Audit log"), ("audit.view",)),
    NavEntry(
        "access.list_requests",
        _l("Permission applications"),
        ("access.request", "access.sign", "access.approve", "access.execute", "audit.view"),
    ),
    NavEntry(
        "access.inbox",
        _l("Applications to handle"),
        ("access.sign", "access.approve", "access.execute"),
        "access_inbox",
    ),
    NavEntry("replies.inbox", _l("Reply inbox"), ("reply.handle",), "reply_inbox"),
    NavEntry("simulator.list_numbers", _l("Carrier simulator"), ("send.simulator",)),
]

# Filled by areas that show a count next to their entry (e.g. the approvers' inbox).
BADGES: dict = {}

# Panels areas add to the dashboard (functions of the viewer) and to the admin's user page
# (functions of the viewer and the user shown). Each returns (template, context) or None;
# the page includes the templates and merges the contexts, so name context keys by area.
DASHBOARD_PANELS: list = []
USER_PANELS: list = []


def collect_panels(providers: list, *args) -> tuple[list[str], dict]:
    """Ask each panel provider; return the templates to include and their merged context."""
    templates: list[str] = []
    context: dict = {}
    for provider in providers:
        panel = provider(*args)
        if panel:
            templates.append(panel[0])
            context.update(panel[1])
    return templates, context


def nav_items() -> list[dict]:
    items = []
    for entry in NAV:
        if entry.permissions and not current_user.can_any(*entry.permissions):
            continue
        badge = BADGES[entry.badge](current_user) if entry.badge in BADGES else None
        items.append(
            {
                "endpoint": entry.endpoint,
                "url": url_for(entry.endpoint),
                "label": entry.label,
                "badge": badge,
            }
        )
    return items
