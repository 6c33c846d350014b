"""POST /webhooks/smartlead: authenticate, store, hand off to be applied, acknowledge.

A plain Django view rather than DRF's @api_view: the body must be read raw (for the signature,
and to keep it exactly as received) and bounded by us, and this is the hottest endpoint.
Every answer is JSON; only a failed store is a 5xx, so Smartlead retries exactly those.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from outboundhq.db import once_more_if_disconnected
from smartlead import applier, webhooks
from smartlead.models import Outcome, WebhookEvent
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


@csrf_exempt
@never_a_traceback
def smartlead_webhook(request: HttpRequest) -> HttpResponse:
    """Authenticate, bound and parse the body, store it (rejected bodies too), acknowledge."""
    if request.method != "POST":
        return error(405, "Only POST is accepted here.", Allow="POST")
    if refusal := refuse_unauthenticated(request):
        return refusal
    try:
        body = read_body(request)
    except Rejected as rejected:
        return keep_rejected(request, "", rejected)
    if refusal := refuse_bad_signature(request, body):
        return refusal
    text = webhooks.decode(body)
    try:
        webhooks.check_content_type(request.content_type or "")
        identity = webhooks.identify(webhooks.parse_payload(text), text)
    except Rejected as rejected:
        return keep_rejected(request, text, rejected)
    return store(request, identity.fields(), text)


def refuse_unauthenticated(request: HttpRequest) -> JsonResponse | None:
    """The shared secret from the URL (`?secret=`) or `X-Webhook-Secret`, in constant time."""
    expected = settings.SMARTLEAD_WEBHOOK_SECRET
    if not expected:
        return error(503, "SMARTLEAD_WEBHOOK_SECRET is not configured; refusing every delivery.")
    offered = request.headers.get("X-Webhook-Secret") or request.GET.get("secret") or ""
    if not offered:
        return error(401, "Missing webhook secret: add ?secret= to the URL or X-Webhook-Secret.")
    if not hmac.compare_digest(offered.encode("utf-8", "replace"), expected.encode()):
        return error(401, "Wrong webhook secret.")
    return None


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


def keep_rejected(request: HttpRequest, text: str, rejected: Rejected) -> JsonResponse:
    """Authenticated but unusable: keep what arrived (as rejected), then answer the 4xx."""
    detail = rejected.message
    if rejected.status == 413:
        detail += " The body was not kept."
        key = f"rejected:toolarge:{uuid.uuid4().hex}"
    else:
        key = "rejected:" + hashlib.sha256(text.encode()).hexdigest()
    fields = {"dedupe_key": key, "outcome": Outcome.REJECTED, "detail": detail}
    response = store(request, fields, text)
    return response if response.status_code >= 500 else error(rejected.status, rejected.message)


def store(request: HttpRequest, fields: dict[str, Any], text: str) -> JsonResponse:
    headers = headers_that_matter(request)
    try:
        # Repeating is safe: a second attempt of a stored event only counts one more delivery.
        stored = once_more_if_disconnected(
            lambda: WebhookEvent.objects.store(**fields, raw_body=text, headers=headers)
        )
    except DatabaseError:
        log.exception("Could not store a Smartlead webhook delivery")
        return error(503, "The event could not be stored; please retry.")
    if stored.outcome == Outcome.RECEIVED:
        hand_off_safely()
    return JsonResponse({"status": "received" if stored.created else "duplicate", "id": stored.id})


def hand_off_safely() -> None:
    """The event is stored: however applying goes, Smartlead gets its 200."""
    try:
        applier.hand_off()
    except Exception:  # noqa: BLE001 - stored events stay pending; the applier retries them
        log.exception("Handing a Smartlead webhook event off to be applied failed")
