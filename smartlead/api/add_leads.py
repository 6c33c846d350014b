"""What an add-leads reply proves about each lead (issue "truthful pushes").

Smartlead answers add-leads with counters, and with a per-lead id map when asked
(`settings.return_lead_ids`). `AddLeadsResult.outcomes()` turns that into one verdict per lead;
a lead the reply does not prove is UNCONFIRMED, never "added" (sequences/sending.py looks it
up). The counters' meanings: docs/EXECUTOR.md.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from smartlead.api.results import as_bool, as_int

# The live add-leads reply's counters (shared smartlead-api.md §5); the ledger keeps them as sent.
COUNT_KEYS = (
    "upload_count",
    "total_leads",
    "already_added_to_campaign",
    "duplicate_count",
    "invalid_email_count",
    "block_count",
    "bounce_count",
    "skipped_in_other_campaign_count",
    "unsubscribed_leads",
    "is_lead_limit_exhausted",
    "lead_import_stopped_count",
)
# Keys of the reply that are not counters of leads turned away.
NOT_COUNTERS = frozenset(
    {"ok", "upload_count", "invalid_emails", "emailToLeadIdMap", "lead_ids", "message", "error"}
)


class LeadOutcome(enum.StrEnum):
    ADDED = "added"  # newly in the campaign
    ALREADY_IN_CAMPAIGN = "already_in_campaign"
    IN_CAMPAIGN = "added_or_existing"  # in the campaign, new or already: the counts can't tell
    IN_OTHER_CAMPAIGN = "in_other_campaign"  # skipped: in another campaign of the same account
    BLOCKED = "blocked"  # on the global or the account's block list
    BOUNCED = "bounced"  # on the bounce list
    UNSUBSCRIBED = "unsubscribed"
    INVALID = "invalid"
    NOT_IMPORTED = "not_imported"  # the plan's lead credits ran out: it may be sent again
    UNCONFIRMED = "unconfirmed"  # the reply does not say: look the lead up before counting it


IN_CAMPAIGN = frozenset(
    {LeadOutcome.ADDED, LeadOutcome.ALREADY_IN_CAMPAIGN, LeadOutcome.IN_CAMPAIGN}
)
# What each outcome means, in words for the SDR (the counter named is Smartlead's own).
REASONS = {
    LeadOutcome.IN_OTHER_CAMPAIGN: "Smartlead skipped the lead: it is already in another campaign "
    "of this Smartlead account (skipped_in_other_campaign_count).",
    LeadOutcome.BLOCKED: "Smartlead did not import the lead: it is on the global or the account's "
    "block list (block_count).",
    LeadOutcome.BOUNCED: "Smartlead did not import the lead: the address is on its bounce list "
    "(bounce_count).",
    LeadOutcome.UNSUBSCRIBED: "Smartlead did not import the lead: it unsubscribed "
    "(unsubscribed_leads).",
    LeadOutcome.INVALID: "Smartlead rejected the email address as invalid (invalid_emails).",
    LeadOutcome.NOT_IMPORTED: "Smartlead's lead credit limit is reached (is_lead_limit_exhausted); "
    "the lead waits for the next run.",
}
MAP_BUCKETS = {
    "newlyAddedLeads": LeadOutcome.ADDED,
    "existingLeads": LeadOutcome.ALREADY_IN_CAMPAIGN,
    "existingLeadsInOtherCampaigns": LeadOutcome.IN_OTHER_CAMPAIGN,
}


class LeadVerdict(NamedTuple):
    # A NamedTuple, not a frozen dataclass: one is built per lead of every batch, and a frozen
    # dataclass's __init__ costs several times more.
    outcome: LeadOutcome
    reason: str = ""
    lead_id: int | None = None


@dataclass(frozen=True)
class AddLeadsResult:
    """One add-leads reply. `outcomes()` says what happened to each lead, as far as the reply
    proves it; everything else is in `counts`, exactly as Smartlead sent it."""

    submitted: int
    added: int
    already_in_campaign: int
    duplicates: int
    invalid_count: int
    invalid_emails: tuple[str, ...]
    blocked: int
    unsubscribed: tuple[str, ...]
    lead_limit_exhausted: bool
    counts: dict[str, Any]
    bounced: int = 0
    in_other_campaigns: int = 0
    unsubscribed_count: int = 0
    lead_map: Mapping[str, tuple[LeadOutcome, int | None]] = field(default_factory=dict)
    unknown_counters: tuple[str, ...] = ()
    recognised: bool = True  # the reply has the live API's counters at all
    message: str = ""  # Smartlead's own words, when it gave any

    def outcomes(self, emails: Iterable[str]) -> dict[str, LeadVerdict]:
        """Each submitted address (lower-cased) with what happened to it.

        Per-lead evidence first (the lead id map, `invalid_emails`, the unsubscribed list);
        the leads left get an outcome by count only when that is unambiguous (what remains of
        the counters names one outcome, for exactly as many leads as are left); the rest are
        UNCONFIRMED, and so is every lead of a reply without the live counters.
        """
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails))
        if not self.recognised:
            why = "Smartlead's reply does not say which leads it imported"
            why += f" ({self.message})." if self.message else "."
            return {e: LeadVerdict(LeadOutcome.UNCONFIRMED, why) for e in wanted}
        found: dict[str, LeadVerdict] = {}
        invalid = {e.strip().lower() for e in self.invalid_emails}
        unsubscribed = {e.strip().lower() for e in self.unsubscribed}
        reasons = {outcome: self._reason(outcome) for outcome in LeadOutcome}
        lead_map = self.lead_map
        for address in wanted:
            if address in invalid:
                found[address] = LeadVerdict(LeadOutcome.INVALID, reasons[LeadOutcome.INVALID])
            elif address in unsubscribed:
                outcome = LeadOutcome.UNSUBSCRIBED
                found[address] = LeadVerdict(outcome, reasons[outcome])
            elif address in lead_map:
                outcome, lead_id = lead_map[address]
                found[address] = LeadVerdict(outcome, reasons[outcome], lead_id)
        left = [e for e in wanted if e not in found]
        if left:
            by_count = self._by_count(found, len(left))
            for address in left:
                found[address] = by_count
        return found

    def _by_count(self, found: dict[str, LeadVerdict], n: int) -> LeadVerdict:
        """One outcome for the `n` leads without per-lead evidence, if the counts allow it."""
        named = Counter(v.outcome for v in found.values())
        added = self.added - named[LeadOutcome.ADDED]
        already = self.already_in_campaign - named[LeadOutcome.ALREADY_IN_CAMPAIGN]
        remaining = {
            LeadOutcome.IN_CAMPAIGN: max(0, added) + max(0, already),
            LeadOutcome.IN_OTHER_CAMPAIGN: self.in_other_campaigns
            - named[LeadOutcome.IN_OTHER_CAMPAIGN],
            LeadOutcome.BLOCKED: self.blocked,
            LeadOutcome.BOUNCED: self.bounced,
            LeadOutcome.UNSUBSCRIBED: self.unsubscribed_count - len(self.unsubscribed),
            LeadOutcome.NOT_IMPORTED: _stopped(self),
        }
        nonzero = {outcome: count for outcome, count in remaining.items() if count > 0}
        if len(nonzero) == 1 and not self.unknown_counters:
            ((outcome, count),) = nonzero.items()
            if count == n:
                if outcome == LeadOutcome.IN_CAMPAIGN and not already:
                    outcome = LeadOutcome.ADDED
                elif outcome == LeadOutcome.IN_CAMPAIGN and not added:
                    outcome = LeadOutcome.ALREADY_IN_CAMPAIGN
                return self._verdict(outcome)
        counters = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v) or "no counters"
        return LeadVerdict(
            LeadOutcome.UNCONFIRMED,
            f"Smartlead's counts ({counters}) do not say which of these leads it imported.",
        )

    def _verdict(self, outcome: LeadOutcome) -> LeadVerdict:
        return LeadVerdict(outcome, self._reason(outcome))

    def _reason(self, outcome: LeadOutcome) -> str:
        reason = REASONS.get(outcome, "")
        if self.message and outcome not in IN_CAMPAIGN:
            reason = f"{reason} Smartlead said: {self.message}".strip()
        return reason


def _stopped(result: AddLeadsResult) -> int:
    stopped = as_int(result.counts.get("lead_import_stopped_count")) or 0
    # Exhausted without a count of what it stopped: the quota's victims are not countable.
    return stopped if stopped or not result.lead_limit_exhausted else 10**9


def _emails(values: Any) -> tuple[str, ...]:
    """Addresses listed either as strings or as objects carrying an email field."""
    found = []
    for value in values if isinstance(values, list) else ():
        address = value.get("email") if isinstance(value, dict) else value
        if isinstance(address, str):
            found.append(address)
    return tuple(found)


def add_leads_result_from(body: dict, submitted: int) -> AddLeadsResult:
    counters = {key: body[key] for key in COUNT_KEYS if key in body}
    unknown = tuple(
        key
        for key, value in body.items()
        if key not in NOT_COUNTERS
        and key not in COUNT_KEYS
        and isinstance(value, int | str)
        and not isinstance(value, bool)
        and (as_int(value) or 0) > 0
    )
    unsubscribed = body.get("unsubscribed_leads")
    message = body.get("error") or body.get("message")
    return AddLeadsResult(
        submitted=submitted,
        # total_leads is what the live API reports as newly added; upload_count is what it read.
        added=as_int(body.get("total_leads")) or 0,
        already_in_campaign=as_int(body.get("already_added_to_campaign")) or 0,
        duplicates=as_int(body.get("duplicate_count")) or 0,
        invalid_count=as_int(body.get("invalid_email_count")) or 0,
        invalid_emails=_emails(body.get("invalid_emails")),
        blocked=as_int(body.get("block_count")) or 0,
        unsubscribed=_emails(unsubscribed),
        lead_limit_exhausted=as_bool(body.get("is_lead_limit_exhausted")),
        counts=counters,
        bounced=as_int(body.get("bounce_count")) or 0,
        in_other_campaigns=as_int(body.get("skipped_in_other_campaign_count")) or 0,
        unsubscribed_count=(
            len(unsubscribed) if isinstance(unsubscribed, list) else as_int(unsubscribed) or 0
        ),
        lead_map=_lead_map(body.get("emailToLeadIdMap")),
        unknown_counters=unknown,
        # A reply without the live counters ({}, an empty body, {"ok": false}, the docs' shape
        # {success, added_count, ...}) proves nothing about any lead.
        recognised=any(
            key in body for key in ("total_leads", "upload_count", "is_lead_limit_exhausted")
        ),
        message=message.strip()[:300] if isinstance(message, str) else "",
    )


def _lead_map(value: Any) -> dict[str, tuple[LeadOutcome, int | None]]:
    """`emailToLeadIdMap` (sent with settings.return_lead_ids): address -> (bucket, lead id)."""
    found: dict[str, tuple[LeadOutcome, int | None]] = {}
    if not isinstance(value, dict):
        return found
    for bucket, outcome in MAP_BUCKETS.items():
        leads = value.get(bucket)
        for address, lead_id in leads.items() if isinstance(leads, dict) else ():
            if isinstance(address, str):
                found[address.strip().lower()] = (outcome, as_int(lead_id))
    return found
