"""Blueprints, one per area."""

from app.views.admin import bp as admin_bp
from app.views.audit import bp as audit_bp
from app.views.auth import bp as auth_bp
from app.views.callcentre import bp as callcentre_bp
from app.views.customers import bp as customers_bp
from app.views.main import bp as main_bp

BLUEPRINTS = [main_bp, auth_bp, admin_bp, audit_bp, customers_bp, callcentre_bp]
