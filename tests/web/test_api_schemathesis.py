"""Schemathesis against /api/v1/openapi.json on the Flask app (WSGI): every answer the API
gives to generated requests, valid and invalid, must be described by the document, and
none may be a server error.

Schemathesis's engine runs here as its command line would (examples, coverage and
fuzzing phases, positive and negative data), through its Python API against the app
object. Its pytest plugin is not used: its lazy fixture loader reads a node attribute
pytest 9 no longer has.

The database holds what the document's examples name, so the explicit examples reach
the successful answers (202, and 200 with real outcomes), not only the refusals:
template 1 bound to the key, customers C000000001, C000000002 (refused) and one with
mobile 13800138000, and message 1 already sent through the simulator.

Two checks are left out. ``positive_data_acceptance`` expects every request the schema
allows to be accepted, but whether a CRM id is a customer of the client's unit, or
which variables template 1 declares, is data the schema cannot express (422).
``ignored_auth`` crashes inside schemathesis 4.32 on WSGI apps (its probe hands the
socket option ``max_redirects`` to werkzeug's test client); tests/web/test_api.py checks
that every endpoint refuses a missing, wrong or revoked key.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from app.extensions import db
from app.models import Message
from app.services import api_messages, sending
from app.views.api_openapi import EXAMPLE_TEMPLATE
from tests.factories import make_api_client, make_customer, make_template

MAX_EXAMPLES = 40


@pytest.fixture
def api_key(app, run_jobs):
    template = make_template(content=EXAMPLE_TEMPLATE)
    assert template.id == 1
    client, key = make_api_client(templates=[template], rate=100_000)
    make_customer(crm_id="C000000001", mobile="13800138001")
    make_customer(crm_id="C000000002", consent="refused")
    make_customer(crm_id="C000000003", mobile="13800138000")
    answer = api_messages.accept(
        client,
        {
            "template_id": 1,
            "recipients": [
                {"crm_id": "C000000001", "vars": {"account": "6225****1234", "amount": "1,000.00"}},
                {"crm_id": "C000000002", "vars": {"account": "6225****9876", "amount": "20.00"}},
            ],
        },
    )
    assert answer.body["id"] == 1
    db.session.get(Message, 1).urgent = True  # not held by quiet hours whenever the test runs
    db.session.commit()
    sending.dispatch_due()
    assert run_jobs() == 0
    return key


def test_the_api_keeps_to_its_openapi_document(app, api_key):
    config = SchemathesisConfig.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "ignored_auth": {"enabled": False},
            },
            "headers": {"Authorization": f"Bearer {api_key}"},
        }
    )
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)
    failures: list[str] = []
    statuses: Counter = Counter()
    scenarios = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"error: {event}")
        recorder = getattr(event, "recorder", None)
        if recorder is None:
            continue
        scenarios += 1
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                operation = f"{interaction.request.method} {interaction.request.uri.split('/api/v1')[-1].split('?')[0]}"
                statuses[(operation.split(" ")[0], interaction.response.status_code)] += 1
        for checks in recorder.checks.values():
            for check in checks:
                if check.status.name != "SUCCESS" and check.failure_info is not None:
                    failure = check.failure_info.failure
                    failures.append(
                        f"{recorder.label}: {check.name}: {failure.title}: {failure.message[:300]}"
                    )
    assert not failures, "\n".join(sorted(set(failures))[:20])
    assert scenarios > 0
    # The examples reached the successful answers, and generated data the refusals.
    assert statuses[("POST", 202)] >= 1, statuses
    assert statuses[("GET", 200)] >= 2, statuses
    assert statuses[("POST", 422)] >= 1 and statuses[("GET", 404)] >= 1, statuses
    assert statuses[("POST", 401)] >= 1, statuses  # requests without the key
