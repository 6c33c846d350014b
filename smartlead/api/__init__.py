"""The one HTTP seam to Smartlead: the client, how its calls travel, and what they answer.

Everything outside this package uses the names below; the modules behind them are
`client` (one method per Smartlead call), `transport` (session, timeouts, retries, the per-key
limiter of `limits`), `errors`, `results` and `add_leads` (typed answers), `events` (Smartlead's
webhook event names) and `tokens` (per-campaign webhook URL tokens). It imports no model.
"""

from __future__ import annotations

from smartlead.api.add_leads import IN_CAMPAIGN, REASONS, AddLeadsResult, LeadOutcome, LeadVerdict
from smartlead.api.client import SmartleadClient
from smartlead.api.errors import (
    InvalidApiKey,
    NoApiAccess,
    NotFound,
    RateLimited,
    SmartleadError,
    TransientError,
    ValidationFailed,
)
from smartlead.api.limits import reset_rate_limiters
from smartlead.api.mailboxes import Reallocation
from smartlead.api.results import (
    Campaign,
    CampaignLead,
    Category,
    EmailAccount,
    FoundLead,
    HistoryMessage,
    Lead,
    SequenceStepSpec,
    Webhook,
)
from smartlead.api.transport import MAX_LEADS_PER_REQUEST, USER_AGENT, Session, new_session

__all__ = [
    "IN_CAMPAIGN",
    "MAX_LEADS_PER_REQUEST",
    "REASONS",
    "USER_AGENT",
    "AddLeadsResult",
    "Campaign",
    "CampaignLead",
    "Category",
    "EmailAccount",
    "FoundLead",
    "HistoryMessage",
    "InvalidApiKey",
    "Lead",
    "LeadOutcome",
    "LeadVerdict",
    "NoApiAccess",
    "NotFound",
    "RateLimited",
    "Reallocation",
    "SequenceStepSpec",
    "Session",
    "SmartleadClient",
    "SmartleadError",
    "TransientError",
    "ValidationFailed",
    "Webhook",
    "new_session",
    "reset_rate_limiters",
]
