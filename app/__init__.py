"""和兴证券短信服务管理系统 — the application factory.

``create_app`` reads as the list of start-up steps; nothing here touches the
database or Redis at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask


def create_app(config: object | str | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, config)
    register_extensions(app)
    register_blueprints(app)
    register_security(app)
    register_errors(app)
    register_templating(app)
    register_cli(app)
    return app


def load_config(app: Flask, config) -> None:
    if config is None:
        config = os.environ.get("APP_CONFIG", "config.DevConfig")
    if isinstance(config, dict):
        app.config.from_object("config.Config")
        app.config.update(config)
    else:
        app.config.from_object(config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    translations = Path(app.root_path) / "translations"
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(translations))


def register_extensions(app: Flask) -> None:
    from app import models  # noqa: F401  (registers the tables with the metadata)
    from app.extensions import babel, csrf, db, login_manager, migrate
    from app.i18n import select_locale, select_timezone

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"

    from app.security import load_user, unauthorized

    login_manager.user_loader(load_user)
    login_manager.unauthorized_handler(unauthorized)


def register_blueprints(app: Flask) -> None:
    from app.views import BLUEPRINTS

    for bp in BLUEPRINTS:
        app.register_blueprint(bp)


def register_security(app: Flask) -> None:
    from app.security import init_security

    init_security(app)


def register_errors(app: Flask) -> None:
    from app.errors import init_errors

    init_errors(app)


def register_templating(app: Flask) -> None:
    from app.templating import init_templating

    init_templating(app)


def register_cli(app: Flask) -> None:
    from app.cli import init_cli

    init_cli(app)
