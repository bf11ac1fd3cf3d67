"""Jobs of the REST API area: the daily purge of old Idempotency-Keys."""

from __future__ import annotations

from app.extensions import db
from app.services import api_messages


def purge_idempotency_keys() -> int:
    """Forget Idempotency-Keys older than API_IDEMPOTENCY_HOURS (scheduler, daily); returns
    how many were deleted. Idempotent: a second run the same day finds nothing older."""
    gone = api_messages.purge_idempotency_keys()
    db.session.commit()
    return gone
