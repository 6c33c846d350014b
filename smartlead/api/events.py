"""Smartlead's webhook event types, named once: what we subscribe to, what the sandbox accepts,
and the keys of what applying each one does (smartlead/applying.py: EFFECTS)."""

from __future__ import annotations

EMAIL_SENT = "EMAIL_SENT"
FIRST_EMAIL_SENT = "FIRST_EMAIL_SENT"  # legacy name of the first email's EMAIL_SENT
EMAIL_OPEN = "EMAIL_OPEN"
EMAIL_LINK_CLICK = "EMAIL_LINK_CLICK"
EMAIL_REPLY = "EMAIL_REPLY"
EMAIL_BOUNCE = "EMAIL_BOUNCE"
LEAD_UNSUBSCRIBED = "LEAD_UNSUBSCRIBED"
LEAD_CATEGORY_UPDATED = "LEAD_CATEGORY_UPDATED"
CAMPAIGN_STATUS_CHANGED = "CAMPAIGN_STATUS_CHANGED"
# Account notifications (Smartlead's per-user notification setting, keyed eventType/campaignId/
# accountId): not part of a campaign webhook's event_types.
CAMPAIGN_BOUNCE_BREACH = "CAMPAIGN_BOUNCE_BREACH"
EMAIL_ACCOUNT_DISCONNECTED = "EMAIL_ACCOUNT_DISCONNECTED"

# What a campaign's webhook subscribes to (provisioning saves exactly these).
SUBSCRIBED = (
    EMAIL_SENT,
    EMAIL_OPEN,
    EMAIL_LINK_CLICK,
    EMAIL_REPLY,
    EMAIL_BOUNCE,
    LEAD_UNSUBSCRIBED,
    LEAD_CATEGORY_UPDATED,
    CAMPAIGN_STATUS_CHANGED,
)
# What Smartlead accepts in a webhook's event_types.
KNOWN = frozenset((*SUBSCRIBED, FIRST_EMAIL_SENT))
# What applying acts on (applying.EFFECTS and notices.NOTICES); any other type is stored only
# to be seen, with a small part of its body (smartlead/bodies.py).
ACTED_ON = frozenset((*KNOWN, CAMPAIGN_BOUNCE_BREACH, EMAIL_ACCOUNT_DISCONNECTED))
# Older and third-party names for the same events, as some payloads still carry them.
ALIASES = {
    "EMAIL_OPENED": EMAIL_OPEN,
    "EMAIL_CLICKED": EMAIL_LINK_CLICK,
    "EMAIL_REPLIED": EMAIL_REPLY,
    "EMAIL_BOUNCED": EMAIL_BOUNCE,
    "EMAIL_UNSUBSCRIBED": LEAD_UNSUBSCRIBED,
    "LEAD_OPENED": EMAIL_OPEN,
    "LEAD_CLICKED": EMAIL_LINK_CLICK,
    "LEAD_REPLIED": EMAIL_REPLY,
    "LEAD_BOUNCED": EMAIL_BOUNCE,
}
