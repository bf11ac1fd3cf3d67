"""The OpenAPI 3 document of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Written by hand next to the views so it says what they do, limits included (they come
from the configuration); ``tests/web/test_api_schemathesis.py`` runs schemathesis
against it and fails on any answer the document does not describe.
"""

from __future__ import annotations

from flask import current_app

from app.models.sending import RECIPIENT_STATUSES
from app.services import api_messages, templates

MESSAGE_STATUSES = ["approved", "sending", "sent", "cancelled"]
# The template the examples fill (docs/api.md uses the same).
EXAMPLE_TEMPLATE = "尊敬的{name}，您的账户{account}于今日入账{amount}元。"
EXAMPLE_REQUEST = {
    "template_id": 1,
    "recipients": [
        {"crm_id": "C000000001", "vars": {"account": "6225****1234", "amount": "1,000.00"}},
        {"mobile": "13800138000", "vars": {"account": "6225****5678", "amount": "88.00"}},
    ],
}


def _error_response(description: str, headers: dict | None = None) -> dict:
    out = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        out["headers"] = headers
    return out


def _datetime(nullable: bool = True) -> dict:
    return {"type": "string", "format": "date-time", "nullable": nullable}


def _every_field_required(properties: dict) -> dict:
    """An object schema whose every property is always present in the answer."""
    return {"type": "object", "required": list(properties), "properties": properties}


def build_spec() -> dict:
    cfg = current_app.config
    max_recipients = int(cfg["API_MAX_RECIPIENTS"])
    rate_headers = {
        "X-RateLimit-Limit": {
            "description": "Calls a minute this key may make.",
            "schema": {"type": "integer"},
        },
        "X-RateLimit-Remaining": {
            "description": "Calls left in the current minute.",
            "schema": {"type": "integer"},
        },
        "X-RateLimit-Reset": {
            "description": "Seconds until the minute ends.",
            "schema": {"type": "integer"},
        },
    }
    common = {
        "401": _error_response(
            "No key, a wrong key or a revoked key.",
            {"WWW-Authenticate": {"schema": {"type": "string"}}},
        ),
        "429": _error_response(
            "Too many calls this minute for this key.",
            {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
        ),
        "503": _error_response(
            "The rate counter (Redis) is unreachable; retry shortly.",
            {"Retry-After": {"schema": {"type": "integer"}}},
        ),
    }
    message_id = {
        "name": "message_id",
        "in": "path",
        "required": True,
        "description": "The id POST /messages answered with.",
        "schema": {"type": "integer", "minimum": 1, "maximum": api_messages.MAX_ID},
        "example": 1,
    }
    counts = {status: {"type": "integer", "minimum": 0} for status in api_messages.OUTCOMES}
    variable_value = {
        "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": templates.VARIABLE_MAX_CHARS},
            {"type": "number"},
        ]
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "和兴证券短信服务管理系统 API",
            "version": "1.0.0",
            "description": (
                "Send approved templates to customers through the same rules as staff "
                "messages (consent, frequency caps, quiet hours, scope, audit). "
                "See docs/api.md."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/messages": {
                "post": {
                    "operationId": "createMessage",
                    "summary": "Send a bound, approved template to listed customers.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": "A retry with the same key and body returns the first "
                            "answer; the same key with another body answers 409.",
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 100,
                                "pattern": "^[!-~]+$",
                            },
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SendRequest"}
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted: an approved message; sent by the workers.",
                            "headers": {
                                "Location": {"schema": {"type": "string"}},
                                "Idempotent-Replayed": {"schema": {"type": "string"}},
                                **rate_headers,
                            },
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/SendAccepted"}
                                }
                            },
                        },
                        "400": _error_response("The body is not valid JSON."),
                        "403": _error_response("The template is not bound to this key."),
                        "409": _error_response(
                            "The template waits for approval again, or the Idempotency-Key "
                            "was used with another body."
                        ),
                        "413": _error_response(
                            f"More than {max_recipients} recipients, or a body over "
                            f"{int(cfg['API_MAX_BODY_BYTES'])} bytes."
                        ),
                        "415": _error_response("The body is not application/json."),
                        "422": _error_response(
                            "Invalid input: the field is named (a variable missing or "
                            "extra, an unknown recipient, a past schedule ...)."
                        ),
                        **common,
                    },
                },
            },
            "/messages/{message_id}": {
                "get": {
                    "operationId": "getMessage",
                    "summary": "Status and counts per outcome of one of the key's messages.",
                    "parameters": [message_id],
                    "responses": {
                        "200": {
                            "description": "The message.",
                            "headers": rate_headers,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/MessageStatus"}
                                }
                            },
                        },
                        "404": _error_response("No message of this key has this id."),
                        **common,
                    },
                },
            },
            "/messages/{message_id}/recipients": {
                "get": {
                    "operationId": "getRecipients",
                    "summary": "The message's recipients and their outcomes, a page at a time.",
                    "parameters": [
                        message_id,
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": list(api_messages.OUTCOMES)},
                        },
                        {
                            "name": "page",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": api_messages.PAGE_MAX,
                                "default": 1,
                            },
                        },
                        {
                            "name": "per_page",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": api_messages.PER_PAGE_MAX,
                                "default": 100,
                            },
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "One page of recipients.",
                            "headers": rate_headers,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/RecipientPage"}
                                }
                            },
                        },
                        "404": _error_response("No message of this key has this id."),
                        "422": _error_response("A query parameter is out of range."),
                        **common,
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The key shown once when the interface user "
                    "was created or its key rotated.",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "description": "A stable code."},
                        "message": {"type": "string", "description": "For people."},
                        "field": {"type": "string", "description": "The field to blame."},
                    },
                },
                "Recipient": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "Exactly one of crm_id and mobile.",
                    "properties": {
                        "crm_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
                        "mobile": {"type": "string", "pattern": "^1[3-9][0-9]{9}$"},
                        "vars": {
                            "type": "object",
                            "additionalProperties": variable_value,
                            "description": "The template's variables ({name} and "
                            "{branch} are filled from the customer).",
                        },
                    },
                },
                "SendRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "example": EXAMPLE_REQUEST,
                    "required": ["template_id", "recipients"],
                    "properties": {
                        "template_id": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": api_messages.MAX_ID,
                        },
                        # The limit is not a maxItems: over it the answer is 413, not 422.
                        "recipients": {
                            "type": "array",
                            "minItems": 1,
                            "description": f"At most {max_recipients} a call (more: 413).",
                            "items": {"$ref": "#/components/schemas/Recipient"},
                        },
                        "schedule_at": {
                            "type": "string",
                            "format": "date-time",
                            "nullable": True,
                            "description": "Null or left out: send now. "
                            "Later than now, at most "
                            f"{int(cfg['API_SCHEDULE_MAX_DAYS'])} "
                            "days ahead; without an offset it is "
                            "Asia/Shanghai time.",
                        },
                    },
                },
                "SendAccepted": _every_field_required(
                    {
                        "id": {"type": "integer"},
                        "status": {"type": "string", "enum": MESSAGE_STATUSES},
                        "template_id": {"type": "integer"},
                        "template_version": {"type": "integer"},
                        "recipients": {"type": "integer", "description": "Listed in the call."},
                        "customers": {
                            "type": "integer",
                            "description": "Customers they name (a mobile may name several).",
                        },
                        "segments": {"type": "integer"},
                        "urgent": {"type": "boolean"},
                        "schedule_at": _datetime(),
                        "created_at": _datetime(False),
                    }
                ),
                "MessageStatus": _every_field_required(
                    {
                        "id": {"type": "integer"},
                        "status": {"type": "string", "enum": MESSAGE_STATUSES},
                        "template_id": {"type": "integer"},
                        "template_version": {"type": "integer"},
                        "recipients": {"type": "integer"},
                        "customers": {"type": "integer"},
                        "urgent": {"type": "boolean"},
                        "schedule_at": _datetime(),
                        "created_at": _datetime(False),
                        "send_started_at": _datetime(),
                        "sent_at": _datetime(),
                        "counts": {
                            "type": "object",
                            "properties": counts,
                            "required": list(api_messages.OUTCOMES),
                        },
                    }
                ),
                "RecipientOutcome": {
                    "type": "object",
                    "required": ["index", "status", "reason"],
                    "properties": {
                        "index": {"type": "integer", "description": "Position in the call."},
                        "crm_id": {"type": "string"},
                        "mobile": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", *RECIPIENT_STATUSES]},
                        "reason": {"type": "string"},
                        "submitted_at": _datetime(),
                        "finished_at": _datetime(),
                    },
                },
                "RecipientPage": _every_field_required(
                    {
                        "message_id": {"type": "integer"},
                        "status": {"type": "string", "nullable": True},
                        "page": {"type": "integer"},
                        "per_page": {"type": "integer"},
                        "total": {"type": "integer"},
                        "pages": {"type": "integer"},
                        "items": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/RecipientOutcome"},
                        },
                    }
                ),
            },
        },
    }
