"""Domain errors. Views turn them into status codes in one place (``app.errors``)."""

from flask_babel import lazy_gettext as _l


class DomainError(Exception):
    """Base class: ``status`` is the HTTP status a view answers with."""

    status = 400
    default_message = _l("The request could not be carried out.")

    def __init__(self, message=None, **details):
        self.message = message if message is not None else self.default_message
        self.details = details
        super().__init__(str(self.message))


class ValidationError(DomainError):
    status = 422
    default_message = _l("Some of the input is not valid.")


class PermissionDenied(DomainError):
    status = 403
    default_message = _l("You do not have permission to do this.")


class NotFound(DomainError):
    status = 404
    default_message = _l("Not found.")


class NotInScope(NotFound):
    """The record exists but lies outside the user's data scope (R-03).

    It answers 404 like a missing record, so that scope does not leak existence.
    """


class Conflict(DomainError):
    status = 409
    default_message = _l("The record changed or is in a state that does not allow this.")
