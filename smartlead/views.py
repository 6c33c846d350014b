"""POST /webhooks/smartlead: authenticate, store, hand off to be applied, acknowledge.

A plain Django view rather than DRF's @api_view: the body must be read raw (for the signature,
and to keep it exactly as received) and bounded by us, and this is the hottest endpoint.
Every answer is JSON; only a failed store is a 5xx, so Smartlead retries exactly those.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from outboundhq.db import once_more_if_disconnected
from smartlead import applier, bodies, webhooks
from smartlead.api import events, tokens
from smartlead.bodies import IGNORED_KEPT_PER_SOURCE
from smartlead.models import REJECTED_KEPT_PER_SOURCE, Outcome, WebhookEvent
from smartlead.webhooks import MAX_BODY_BYTES, Rejected

log = logging.getLogger(__name__)


def error(status: int, message: str, **headers: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status, headers=headers)


def never_a_traceback(view: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except Exception:
            log.exception("Unhandled error in the Smartlead webhook receiver")
            return error(500, "Internal error; it has been logged.")

    return wrapper


@dataclass(frozen=True)
class Caller:
    """Who the URL says sent a delivery: one campaign's token, or the legacy global secret."""

    credential: str
    campaign_id: int | None = None  # None: the global secret, good for any campaign

    @property
    def source(self) -> str:
        return "secret" if self.campaign_id is None else f"token:{self.campaign_id}"

    def may_report_on(self, campaign_id: int | None) -> bool:
        """A token speaks for its own campaign only; checked against the payload's campaign."""
        if self.campaign_id is None:
            return True
        return campaign_id is not None and tokens.is_valid(self.credential, campaign_id)


@csrf_exempt
@never_a_traceback
def smartlead_webhook(request: HttpRequest) -> HttpResponse:
    """Authenticate, bound and parse the body, store it (rejected bodies too), acknowledge."""
    if request.method != "POST":
        return error(405, "Only POST is accepted here.", Allow="POST")
    caller = authenticate(request)
    if isinstance(caller, JsonResponse):
        return caller
    try:
        body = read_body(request)
    except Rejected as rejected:
        return keep_rejected(request, caller, "", rejected)
    if refusal := refuse_bad_signature(request, body):
        return refusal
    text = webhooks.decode(body)
    try:
        webhooks.check_content_type(request.content_type or "")
        identity = webhooks.identify(webhooks.parse_payload(text), text)
    except Rejected as rejected:
        return keep_rejected(request, caller, text, rejected)
    if not caller.may_report_on(identity.campaign_id):
        shown = identity.campaign_id if identity.campaign_id is not None else "none"
        message = f"This URL's token is for campaign {caller.campaign_id}, not campaign {shown}."
        return keep_rejected(request, caller, text, Rejected(401, message))
    response = store(request, caller, identity.fields(), text)
    if identity.event_type not in events.ACTED_ON and response.status_code < 500:
        prune_safely(caller.source, Outcome.IGNORED, IGNORED_KEPT_PER_SOURCE)
    return response


def authenticate(request: HttpRequest) -> Caller | JsonResponse:
    """`?campaign=<id>&token=<its token>`, or (switch-over) the global secret as `?secret=` or
    `X-Webhook-Secret`. Nothing is stored for a wrong credential: it costs one HMAC to refuse."""
    if not settings.SMARTLEAD_WEBHOOK_SECRET:
        return error(503, "SMARTLEAD_WEBHOOK_SECRET is not configured; refusing every delivery.")
    if token := request.GET.get("token", ""):
        campaign_id = webhooks.campaign_id_of(request.GET.get("campaign", ""))
        if campaign_id is None or not tokens.is_valid(token, campaign_id):
            return error(401, "Wrong webhook token for this campaign.")
        return Caller(token, campaign_id)
    offered = request.headers.get("X-Webhook-Secret") or request.GET.get("secret") or ""
    if not offered:
        return error(401, "Missing webhook secret: the URL needs ?campaign=<id>&token=<token>.")
    if not settings.SMARTLEAD_WEBHOOK_ACCEPT_LEGACY_SECRET:
        return error(
            401, "The global webhook secret is no longer accepted; use this campaign's URL."
        )
    if not tokens.is_server_secret(offered):
        return error(401, "Wrong webhook secret.")
    return Caller(offered)


def refuse_bad_signature(request: HttpRequest, body: bytes) -> JsonResponse | None:
    """Checked only when Smartlead signs and we know the signing secret (it mostly doesn't)."""
    header = request.headers.get("X-Smartlead-Signature")
    secret = settings.SMARTLEAD_WEBHOOK_SIGNING_SECRET
    if header is None or not secret or webhooks.signature_matches(body, header, secret):
        return None
    return error(401, "X-Smartlead-Signature does not match the body.")


def read_body(request: HttpRequest) -> bytes:
    """At most 1 MB, judged by Content-Length and by what is actually read.

    We read the stream ourselves instead of `request.body`, whose own limit would raise
    RequestDataTooBig (a 500 here). A chunked request has no Content-Length; the server has
    already de-chunked it when it sets wsgi.input_terminated (gunicorn does).
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    size = int(declared) if declared.strip().isdecimal() else None
    if size is not None and size > MAX_BODY_BYTES:
        raise Rejected(413, f"The body is {size} bytes; the limit is 1 MB ({MAX_BODY_BYTES}).")
    stream: Any = request
    if size is None and request.META.get("wsgi.input_terminated"):
        stream = request.META["wsgi.input"]
    body = stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise Rejected(413, f"The body is over the 1 MB limit ({MAX_BODY_BYTES} bytes).")
    return body


def headers_that_matter(request: HttpRequest) -> dict[str, str]:
    """Kept with the event for diagnosis. Never the secret header or the query string."""
    kept = {
        name.lower(): webhooks.clean(request.headers[name], 300)
        for name in ("Content-Type", "User-Agent", "X-Request-Id", "X-Webhook-Level")
        if name in request.headers
    }
    if "X-Smartlead-Signature" in request.headers:
        verified = bool(settings.SMARTLEAD_WEBHOOK_SIGNING_SECRET)
        kept["x-smartlead-signature"] = "verified" if verified else "present, not verified"
    return kept


def keep_rejected(
    request: HttpRequest, caller: Caller, text: str, rejected: Rejected
) -> JsonResponse:
    """Authenticated but unusable: keep what arrived (as rejected, clipped), then the 4xx.

    Only the newest REJECTED_KEPT_PER_SOURCE of one caller are kept, so a campaign's URL
    cannot fill the table, nor push another campaign's evidence out."""
    detail = rejected.message
    if rejected.status == 413:
        detail += " The body was not kept."
        key = f"rejected:toolarge:{uuid.uuid4().hex}"
    else:
        key = "rejected:" + hashlib.sha256(text.encode()).hexdigest()
    fields = {"dedupe_key": key, "outcome": Outcome.REJECTED, "detail": detail}
    response = store(request, caller, fields, webhooks.clip_rejected(text))
    if response.status_code >= 500:
        return response
    prune_safely(caller.source, Outcome.REJECTED, REJECTED_KEPT_PER_SOURCE)
    return error(rejected.status, rejected.message)


def store(request: HttpRequest, caller: Caller, fields: dict[str, Any], text: str) -> JsonResponse:
    headers = headers_that_matter(request)
    # Neither our credentials nor Smartlead's own `secret_key` is ever stored in clear.
    text = webhooks.redact_body(text, [caller.credential, *tokens.server_secrets()])
    if fields.get("outcome") != Outcome.REJECTED:  # a rejected body is clipped already
        text = bodies.kept(text, fields["event_type"])
    fields = fields | {"source": caller.source, "raw_body": text, "headers": headers}
    try:
        # Repeating is safe: a second attempt of a stored event only counts one more delivery.
        stored = once_more_if_disconnected(lambda: WebhookEvent.objects.store(**fields))
    except DatabaseError:
        log.exception("Could not store a Smartlead webhook delivery")
        return error(503, "The event could not be stored; please retry.")
    if stored.outcome == Outcome.RECEIVED:
        hand_off_safely()
    return JsonResponse({"status": "received" if stored.created else "duplicate", "id": stored.id})


def prune_safely(source: str, outcome: str, keep: int) -> None:
    """The delivery is stored; failing to forget older ones must not change the answer."""
    try:
        WebhookEvent.objects.prune(source, outcome=outcome, keep=keep)
    except DatabaseError:
        log.exception("Could not prune %s Smartlead webhook deliveries", outcome)


def hand_off_safely() -> None:
    """The event is stored: however applying goes, Smartlead gets its 200."""
    try:
        applier.hand_off()
    except Exception:  # noqa: BLE001 - stored events stay pending; the applier retries them
        log.exception("Handing a Smartlead webhook event off to be applied failed")
