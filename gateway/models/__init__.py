"""SQLModel tables; importing this package registers every table on `SQLModel.metadata`."""

from gateway.models.accounts import Account, AccountPublic, ApiKey, ApiKeyPublic
from gateway.models.compliance import (
    Channel,
    Consent,
    LedgerEvent,
    LedgerSource,
    OptOutConfirmation,
    OptOutEvent,
)
from gateway.models.email import Email, EmailStatus
from gateway.models.leads import Lead, PhoneStatus
from gateway.models.messaging import (
    ContactLock,
    Direction,
    Message,
    MessageEvent,
    MessageStatus,
    MessagingService,
    NumberKind,
    Purpose,
    SenderNumber,
    WebhookClaim,
)
from gateway.models.plays import (
    Activity,
    ActivityType,
    IdempotencyKey,
    LeadOriginator,
    Play,
    PlaybookRecord,
    PlaybookVersion,
    PlayLog,
    PlayState,
    Rep,
    SourceRule,
)
from gateway.models.voice import PartyLineRecord, RepReservation
from gateway.models.webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookPolicy,
    WebhookSubscription,
)

__all__ = [
    "Account",
    "AccountPublic",
    "Activity",
    "ActivityType",
    "ApiKey",
    "ApiKeyPublic",
    "Channel",
    "Consent",
    "ContactLock",
    "DeliveryStatus",
    "Direction",
    "Email",
    "EmailStatus",
    "IdempotencyKey",
    "Lead",
    "LeadOriginator",
    "LedgerEvent",
    "LedgerSource",
    "Message",
    "MessageEvent",
    "MessageStatus",
    "MessagingService",
    "NumberKind",
    "OptOutConfirmation",
    "OptOutEvent",
    "PartyLineRecord",
    "PhoneStatus",
    "Play",
    "PlayLog",
    "PlayState",
    "PlaybookRecord",
    "PlaybookVersion",
    "Purpose",
    "Rep",
    "RepReservation",
    "SenderNumber",
    "SourceRule",
    "WebhookClaim",
    "WebhookDelivery",
    "WebhookPolicy",
    "WebhookSubscription",
]
