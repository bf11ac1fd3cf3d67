"""Database models, one module per domain; importing this package registers them all."""

from app.models.access import AccessRequest, RoleChange
from app.models.api import (
    ApiClient,
    ApiClientTemplate,
    ApiMessage,
    ApiRecipient,
    IdempotencyKey,
    MessageTemplate,
    TemplateApproval,
)
from app.models.audit import AuditLog
from app.models.customers import (
    ConsentEvent,
    Customer,
    CustomerEvent,
    CustomerTag,
    Handover,
    MobileCheck,
    SharedMobile,
    SharedMobileState,
)
from app.models.imports import ImportRowError, ImportRun
from app.models.messages import (
    AudienceUpload,
    AudienceUploadRow,
    CappedCustomer,
    CapState,
    ContentRule,
    Message,
    MessageApproval,
    MessageSetting,
)
from app.models.org import LoginEvent, Role, RolePermission, Unit, User, user_roles
from app.models.sending import (
    DeliveryReport,
    InboundReply,
    Recipient,
    ReplyNote,
    SendBatch,
    SendRun,
    SimulatedSms,
)
from app.models.system import ScheduledRun

__all__ = [
    "AccessRequest",
    "ApiClient",
    "ApiClientTemplate",
    "ApiMessage",
    "ApiRecipient",
    "IdempotencyKey",
    "MessageTemplate",
    "TemplateApproval",
    "AudienceUpload",
    "AudienceUploadRow",
    "CappedCustomer",
    "CapState",
    "AuditLog",
    "ConsentEvent",
    "ContentRule",
    "Customer",
    "CustomerEvent",
    "CustomerTag",
    "DeliveryReport",
    "Handover",
    "ImportRowError",
    "ImportRun",
    "InboundReply",
    "MobileCheck",
    "LoginEvent",
    "Message",
    "MessageApproval",
    "MessageSetting",
    "Recipient",
    "ReplyNote",
    "Role",
    "RoleChange",
    "RolePermission",
    "ScheduledRun",
    "SendBatch",
    "SendRun",
    "SharedMobile",
    "SharedMobileState",
    "SimulatedSms",
    "Unit",
    "User",
    "user_roles",
]
