"""The one helper module for htmx requests (house style 9)."""

from __future__ import annotations

from flask import make_response, render_template, request


def is_partial_request() -> bool:
    """True when htmx asks for a fragment: HX-Request set, not boosted, not a history restore."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-Boosted") != "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render_page_or_partial(
    page_template: str, partial_template: str, /, status: int = 200, **context
):
    """Render the full page, or just its partial for htmx; always ``Vary: HX-Request``.

    The template names are positional-only so that ``page=`` can be a context variable.
    """
    template = partial_template if is_partial_request() else page_template
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def render_partial(partial_template: str, /, status: int = 200, **context):
    """A fragment that is its own resource (a dedicated URL)."""
    response = make_response(render_template(partial_template, **context), status)
    response.vary.add("HX-Request")
    return response
