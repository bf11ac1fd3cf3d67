"""Blueprints, one per area."""

from app.views.access import bp as access_bp
from app.views.admin import bp as admin_bp
from app.views.api import bp as api_bp
from app.views.api_clients import bp as api_clients_bp
from app.views.audit import bp as audit_bp
from app.views.auth import bp as auth_bp
from app.views.callcentre import bp as callcentre_bp
from app.views.customers import bp as customers_bp
from app.views.imports import bp as imports_bp
from app.views.inbox import bp as inbox_bp
from app.views.main import bp as main_bp
from app.views.messages import bp as messages_bp
from app.views.replies import bp as replies_bp
from app.views.rules import bp as rules_bp
from app.views.sending import bp as sending_bp
from app.views.simulator import bp as simulator_bp
from app.views.templates import bp as templates_bp
from app.views.webhooks import bp as webhooks_bp

BLUEPRINTS = [main_bp, auth_bp, admin_bp, audit_bp, customers_bp, callcentre_bp]
# Messages (issue 4): drafting, approvers' inbox, content rules and settings.
BLUEPRINTS += [messages_bp, inbox_bp, rules_bp]
# Sending (issue 5): progress and recipients, reply inbox, carrier simulator, webhooks.
BLUEPRINTS += [sending_bp, replies_bp, simulator_bp, webhooks_bp]
# Permission applications (issue 6).
BLUEPRINTS += [access_bp]
# CRM import (issue 3).
BLUEPRINTS += [imports_bp]
# Interface users (issue 6, items 5-7): the REST API, API clients, approved templates.
BLUEPRINTS += [api_bp, api_clients_bp, templates_bp]
