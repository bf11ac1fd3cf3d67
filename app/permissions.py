"""The catalogue of fine-grained permissions and the standard roles built from them (R-02).

Permissions are strings checked by ``permission_required``; roles live in the
database so the Market admin can see them, and ``ensure_roles`` keeps the standard
ones in step with this catalogue.
"""

from flask_babel import lazy_gettext as _l

PERMISSIONS: dict[str, object] = {
    "dashboard.view": _l("See the dashboard"),
    "customer.view": _l("View customers in scope"),
    "customer.view_full_mobile": _l("See full mobile numbers"),
    "customer.consent_update": _l("Record a customer's consent (branch staff)"),
    "customer.opt_out": _l("Record an opt-out by phone (call centre)"),
    "customer.import": _l("Import the CRM extract"),
    "customer.handover": _l("Hand customers over"),
    "customer.assign": _l("Assign handed-over customers"),
    "customer.verify_mobile": _l("Verify doubtful mobile numbers (branch)"),
    "message.view": _l("See the messages of one's unit and their approval history"),
    "message.draft": _l("Draft messages"),
    "message.approve": _l("Approve messages as unit head"),
    "message.review_advisory": _l("Review advisory content (Research)"),
    "admin.units": _l("Manage units"),
    "admin.users": _l("Manage user accounts and roles"),
    "admin.rules": _l("Manage content rules and settings"),
    "access.request": _l("Prepare permission applications"),
    "access.sign": _l("Sign permission applications as unit head"),
    "access.approve": _l("Approve permission applications for the company"),
    "access.execute": _l("Execute permission applications"),
    "audit.view": _l("Read and export the audit log"),
    "finance.view": _l("See costs and usage"),
    "data.all_units": _l("See data of every unit"),
    "api.send": _l("Send through the REST API"),
    "reply.handle": _l("Handle customers' replies in the reply inbox"),
    "send.retry": _l("Send again to recipients whose outcome is unknown"),
    "send.simulator": _l("Use the carrier simulator (play the customer's phone)"),
}

# code: (Chinese name, English name, permissions)
STANDARD_ROLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "staff_sender": (
        "发送员",
        "Staff sender",
        (
            "dashboard.view",
            "customer.view",
            "customer.consent_update",
            "customer.handover",
            "customer.verify_mobile",
            "message.view",
            "message.draft",
            "access.request",
            "reply.handle",
        ),
    ),
    "unit_head": (
        "部门负责人/审批人",
        "Unit head / approver",
        (
            "dashboard.view",
            "customer.view",
            "customer.consent_update",
            "customer.handover",
            "customer.assign",
            "customer.verify_mobile",
            "message.view",
            "message.draft",
            "message.approve",
            "access.request",
            "access.sign",
            "reply.handle",
        ),
    ),
    "research_reviewer": (
        "研究审核员",
        "Research reviewer",
        ("dashboard.view", "message.view", "message.review_advisory"),
    ),
    "call_centre_agent": (
        "呼叫中心坐席",
        "Call-centre agent",
        ("dashboard.view", "customer.view", "customer.opt_out", "data.all_units"),
    ),
    "market_admin": (
        "市场业务部管理员",
        "Market admin",
        (
            "dashboard.view",
            "customer.view",
            "customer.view_full_mobile",
            "customer.import",
            "admin.units",
            "admin.users",
            "admin.rules",
            "access.request",
            "access.execute",
            "reply.handle",
            "send.retry",
            "send.simulator",
            "data.all_units",
            "finance.view",
            "message.view",
        ),
    ),
    "company_approver": (
        "公司审批人",
        "Company approver",
        ("dashboard.view", "access.approve"),
    ),
    "finance": (
        "计划财务",
        "Finance",
        ("dashboard.view", "finance.view", "data.all_units"),
    ),
    "auditor": (
        "审计员(只读)",
        "Auditor (read-only)",
        (
            "dashboard.view",
            "customer.view",
            "audit.view",
            "finance.view",
            "data.all_units",
            "message.view",
        ),
    ),
    "api_client": (
        "接口用户",
        "API client",
        ("api.send",),
    ),
}
