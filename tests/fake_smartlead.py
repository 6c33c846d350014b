"""A `responses`-backed stand-in for the Smartlead endpoints the executor calls.

Unit tests use it to assert request bodies and call counts at the HTTP seam; end-to-end tests
use the real sandbox (smartlead/sandbox.py) over HTTP instead.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from typing import Any

import responses

from outboundhq.logs import redact

BASE = "https://smartlead.test/api/v1"


class FakeSmartlead:
    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.rsps = rsps
        self.ids = itertools.count(5001)
        self.campaigns: dict[int, dict[str, Any]] = {}
        self.leads: dict[int, list[str]] = defaultdict(list)
        self.invalid: set[str] = set()
        self.unsubscribed: set[str] = set()
        self.failures: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.calls: list[tuple[str, str, Any]] = []
        self._register()

    def fail(
        self,
        action: str,
        status: int,
        body: dict[str, Any] | None = None,
        times: int = 1,
        campaign: int | None = None,
    ) -> None:
        """The next `times` calls of `action` (create, leads, schedule, ...), for one campaign or
        any, answer `status`."""
        key = f"{action}:{campaign}" if campaign else action
        self.failures[key].extend([(status, body or {"error": "boom"})] * times)

    def count(self, action: str) -> int:
        return sum(1 for a, _, _ in self.calls if a == action)

    def bodies(self, action: str) -> list[Any]:
        return [body for a, _, body in self.calls if a == action]

    def _register(self) -> None:
        def route(method: str, pattern: str, action: str) -> None:
            self.rsps.add_callback(
                method,
                re.compile(rf"{re.escape(BASE)}{pattern}(\?.*)?$"),
                callback=lambda request, a=action: self._answer(a, request),
            )

        route("POST", r"/campaigns/create", "create")
        route("GET", r"/campaigns/", "list_campaigns")
        route("GET", r"/campaigns/\d+/webhooks", "list_webhooks")
        route("GET", r"/campaigns/(\d+)", "get_campaign")
        route("GET", r"/email-accounts/\d+/", "get_mailbox")
        for action in (
            "sequences",
            "email-accounts",
            "schedule",
            "settings",
            "status",
            "webhooks",
            "leads",
        ):
            route("POST", rf"/campaigns/\d+/{action}", action)

    def _answer(self, action: str, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body) if request.body else None
        self.calls.append((action, redact(request.url), body))  # keys never in test output
        campaign = re.search(r"/campaigns/(\d+)(/|\?|$)", request.url)
        for key in (f"{action}:{campaign.group(1)}" if campaign else "", action):
            if self.failures.get(key):
                status, payload = self.failures[key].pop(0)
                return status, {"Retry-After": "0"}, json.dumps(payload)
        handler = getattr(self, f"_{action.replace('-', '_')}", None)
        payload = handler(body, int(campaign.group(1)) if campaign else None) if handler else None
        return 200, {}, json.dumps(payload if payload is not None else {"ok": True})

    def _create(self, body: dict[str, Any], _: None) -> dict[str, Any]:
        campaign_id = next(self.ids)
        self.campaigns[campaign_id] = {"id": campaign_id, "name": body["name"], "status": "DRAFTED"}
        return {"ok": True, **self.campaigns[campaign_id]}

    def _get_campaign(self, body: None, campaign_id: int) -> dict[str, Any]:
        return self.campaigns.get(campaign_id, {})  # Smartlead's 200 {} for a missing one

    def _get_mailbox(self, body: None, _: None) -> dict[str, Any]:
        return {"id": 11, "from_email": "sdr@outboundhq.test", "from_name": "SDR"}

    def _list_campaigns(self, body: None, _: None) -> list[dict[str, Any]]:
        return list(self.campaigns.values())

    def _list_webhooks(self, body: None, _: int) -> list[dict[str, Any]]:
        return []

    def _leads(self, body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
        emails = [lead["email"] for lead in body["lead_list"]]
        invalid = [e for e in emails if e in self.invalid]
        unsubscribed = [e for e in emails if e in self.unsubscribed]
        existing = set(self.leads[campaign_id])
        new = [e for e in emails if e not in existing and e not in invalid + unsubscribed]
        self.leads[campaign_id].extend(new)
        return {
            "ok": True,
            "upload_count": len(emails),
            "total_leads": len(new),
            "already_added_to_campaign": len([e for e in emails if e in existing]),
            "duplicate_count": 0,
            "invalid_email_count": len(invalid),
            "invalid_emails": invalid,
            "block_count": 0,
            "bounce_count": 0,
            "unsubscribed_leads": unsubscribed,
            "is_lead_limit_exhausted": False,
        }
