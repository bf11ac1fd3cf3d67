"""Blueprints, one per area."""

from app.views.admin import bp as admin_bp
from app.views.audit import bp as audit_bp
from app.views.auth import bp as auth_bp
from app.views.main import bp as main_bp

BLUEPRINTS = [main_bp, auth_bp, admin_bp, audit_bp]
