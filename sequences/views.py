"""Sequence endpoints for the web app: activate and pause, with the Smartlead campaign in step."""

from __future__ import annotations

import hmac
import uuid

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.auth import user_api
from profiles.credentials import SmartleadCredentials, interactive_client
from profiles.health import why_held
from profiles.models import Profile
from profiles.serializers import (
    Conflict,
    ErrorSerializer,
    bad_request,
    problem,
    smartlead_failure,
    unreadable_key,
)
from sequences import sync
from sequences.executor import execute
from sequences.models import RunTrigger, Sequence, SequenceStatus, SyncAction
from sequences.provisioning import (
    CampaignNeedsAttention,
    ProvisioningBlocked,
    ProvisioningBusy,
    campaign_gone,
    needs_attention,
    provision,
    unsupported_reason,
)
from sequences.runs import as_dict
from smartlead.api import NotFound, SmartleadError

SequenceState = inline_serializer(
    "SequenceState",
    {
        "id": serializers.UUIDField(),
        "status": serializers.CharField(help_text="`active` after activate, `paused` after pause."),
        "smartlead_campaign_id": serializers.CharField(allow_null=True),
        "warning": serializers.CharField(required=False),
    },
)
ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 409, 502)}


@extend_schema(
    summary="Activate a sequence (sets up or resumes its Smartlead campaign)",
    request=None,
    responses={200: SequenceState, **ERRORS},
)
@user_api(["POST"])
def activate(request: Request, id: uuid.UUID) -> Response:
    sequence = own_sequence(request.user, id)
    credentials = sendable(sequence, request.user)
    try:
        start_campaign(sequence, credentials)
    except CampaignNeedsAttention as exc:
        raise problem(Conflict, str(exc), "campaign_lost") from None
    except ProvisioningBlocked as exc:
        raise bad_request(str(exc), "unsupported_sequence") from None
    except ProvisioningBusy:
        raise problem(
            Conflict, "The campaign is being set up right now; try again in a minute.", "busy"
        ) from None
    except SmartleadError as exc:
        request.user.record_smartlead_refusal(exc)
        raise smartlead_failure(exc) from None
    set_status(sequence, SequenceStatus.ACTIVE)
    return Response(state(sequence))


@extend_schema(
    summary="Pause a sequence and its Smartlead campaign",
    request=None,
    responses={200: SequenceState, **ERRORS},
)
@user_api(["POST"])
def pause(request: Request, id: uuid.UUID) -> Response:
    sequence = own_sequence(request.user, id)
    if sequence.status not in (SequenceStatus.ACTIVE, SequenceStatus.PAUSED):
        raise bad_request(
            f"Only an active sequence can be paused; this one is {sequence.status}.", "not_active"
        )
    # Paused here first: the executor stops adding leads even if Smartlead is unreachable.
    set_status(sequence, SequenceStatus.PAUSED)
    credentials = request.user.smartlead_credentials()
    if not sequence.has_campaign:
        return Response(state(sequence))
    if credentials is None:
        warning = "The Smartlead campaign was not paused: connect Smartlead, then pause again."
        return Response(state(sequence) | {"warning": warning})
    try:
        sync.change_campaign_now(sequence, credentials, SyncAction.PAUSE_CAMPAIGN)
    except SmartleadError as exc:
        request.user.record_smartlead_refusal(exc)
        prefix = "Paused here, but not in Smartlead yet (retried every executor run). "
        raise smartlead_failure(exc, prefix=prefix) from None
    return Response(state(sequence))


def own_sequence(profile: Profile, sequence_id: uuid.UUID) -> Sequence:
    """The SDR's own sequence; someone else's is as absent as one that does not exist."""
    sequence = Sequence.objects.filter(pk=sequence_id, created_by=profile).first()
    if sequence is None:
        raise problem(exceptions.NotFound, "No such sequence.", "not_found")
    return sequence


def sendable(sequence: Sequence, profile: Profile) -> SmartleadCredentials:
    """The credentials to activate with, or a 400 saying what stops the sequence from sending."""
    if sequence.status == SequenceStatus.ARCHIVED:
        raise bad_request("Archived sequences cannot be activated.", "archived")
    reason = unsupported_reason(sequence)
    if reason:
        raise bad_request(reason, "unsupported_sequence")
    sender = profile.sender()
    if sender.unreadable:
        raise unreadable_key()
    credentials = sender.credentials
    if credentials is None:
        missing = "API key" if not profile.has_smartlead_key else "email account"
        raise bad_request(
            f"Connect Smartlead first: your profile has no {missing} to send with.",
            "not_connected",
        )
    if sender.held:
        raise bad_request(
            f"None of your mailboxes can send ({why_held(profile)}): fix one in Smartlead or "
            "choose another, then activate again.",
            "no_healthy_mailbox",
        )
    return credentials


def start_campaign(sequence: Sequence, credentials: SmartleadCredentials) -> None:
    """Provisions the campaign (a new one starts itself); an existing one is resumed.

    A 404 on resuming is checked with a campaign lookup: a campaign gone from the SDR's account
    puts the sequence in needs attention (409) instead of starting its leads over elsewhere.
    """
    existed = sequence.has_campaign
    provision(sequence, credentials, client_factory=interactive_client)
    sequence.refresh_from_db(fields=["smartlead_campaign_id"])
    if not existed:
        return
    try:
        sync.change_campaign_now(sequence, credentials, SyncAction.RESUME_CAMPAIGN)
    except NotFound:
        with interactive_client(credentials.api_key) as client:
            reason = campaign_gone(client, sequence.campaign, credentials.email_account_id)
        if reason is None:
            raise
        needs_attention(sequence.id, reason)
        raise CampaignNeedsAttention(reason) from None


def set_status(sequence: Sequence, status: SequenceStatus) -> None:
    sequence.status, sequence.updated_at = status, timezone.now()
    sequence.save(update_fields=["status", "updated_at"])


def state(sequence: Sequence) -> dict[str, object]:
    return {
        "id": str(sequence.id),
        "status": sequence.status,
        "smartlead_campaign_id": sequence.smartlead_campaign_id,
    }


@extend_schema(
    summary="Run the sequence executor now (for an external scheduler)",
    request=None,
    responses={200: dict, 401: ErrorSerializer, 503: ErrorSerializer},
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def execute_sequences(request: Request) -> Response:
    """`Authorization: Bearer <CRON_SECRET>`; answers with the run record."""
    if not settings.CRON_SECRET:
        return Response(
            {"error": "The cron endpoint is disabled: CRON_SECRET is not configured."}, status=503
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), settings.CRON_SECRET.encode()
    ):
        return Response(
            {"error": "Send the cron secret as 'Authorization: Bearer <CRON_SECRET>'."},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="cron"'},
        )
    try:
        record = execute(trigger=RunTrigger.CRON, time_budget=settings.CRON_TIME_BUDGET_SECONDS)
    except DatabaseError:
        return Response(
            {"error": "The database is unreachable; the run did not start."}, status=503
        )
    return Response(as_dict(record))
