"""The connect API: an SDR saves their Smartlead key and picks the mailboxes to send from.

Each view works on the signed-in user's own profile only (`request.user`), so there is no id in
these URLs to guess. The key goes in and is checked; it never comes back out.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.auth import user_api
from profiles.models import Profile
from profiles.serializers import (
    ApiKeyInput,
    ConnectionSerializer,
    ConnectResultSerializer,
    EmailAccountChoice,
    ErrorSerializer,
    account_data,
    bad_request,
    connection_data,
    smartlead_failure,
    unreadable_key,
    validated,
)
from smartlead.api import SmartleadError

ERRORS = {400: ErrorSerializer, 401: ErrorSerializer, 403: ErrorSerializer, 502: ErrorSerializer}


@extend_schema(
    methods=["GET"],
    summary="The signed-in SDR's Smartlead connection",
    description="Checks the saved key with Smartlead when there is one; if Smartlead cannot be "
    "reached, answers with the last known status and `smartlead_error`. A key check never "
    "makes a mailbox healthy again: only a health read does (connecting, choosing mailboxes, "
    "the admin's verify, the hourly reconcile pass).",
    responses={200: ConnectionSerializer, **ERRORS},
)
@extend_schema(
    methods=["POST"],
    summary="Connect (or replace) the Smartlead API key",
    description="Saved only if Smartlead accepts it. Answers with the email accounts it can send "
    "from, each with its health; a chosen account the new key does not own is dropped.",
    request=ApiKeyInput,
    responses={200: ConnectResultSerializer, **ERRORS, 413: ErrorSerializer},
)
@extend_schema(
    methods=["DELETE"],
    summary="Disconnect Smartlead (forget the key and the email accounts)",
    responses={204: None, 401: ErrorSerializer},
)
@user_api(["GET", "POST", "DELETE"])
def connection(request: Request) -> Response:
    profile: Profile = request.user
    if request.method == "POST":
        return connect(profile, validated(ApiKeyInput, request.data)["api_key"])
    if request.method == "DELETE":
        profile.disconnect_smartlead()
        return Response(status=204)
    return Response(ConnectionSerializer(live_connection(profile)).data)


def connect(profile: Profile, api_key: str) -> Response:
    try:
        accounts = profile.connect_smartlead(api_key)
    except SmartleadError as exc:
        raise smartlead_failure(exc) from None
    data = connection_data(profile, accounts=accounts)
    data["email_accounts"] = [account_data(account) for account in accounts]
    return Response(ConnectResultSerializer(data).data)


def live_connection(profile: Profile) -> dict:
    """The connection with a fresh verdict from Smartlead; the last known one if it is down."""
    if not profile.has_smartlead_key or not profile.key_is_readable():
        return connection_data(profile)  # the status says which
    try:
        accounts = profile.check_smartlead()
    except SmartleadError as exc:
        return connection_data(profile, smartlead_error=str(exc))
    return connection_data(profile, accounts=accounts)


@extend_schema(
    summary="Choose the Smartlead email accounts to send from",
    description="`email_account_ids` (in order; the first is the profile's own), or one "
    "`email_account_id`. Each must belong to the saved key (checked live with Smartlead), else "
    "nothing is saved. Each is read for health; the SDR's campaigns get the healthy ones.",
    request=EmailAccountChoice,
    responses={200: ConnectionSerializer, **ERRORS, 413: ErrorSerializer},
)
@user_api(["PUT"])
def email_account(request: Request) -> Response:
    profile: Profile = request.user
    choice = validated(EmailAccountChoice, request.data)
    field = "email_account_ids" if "email_account_ids" in choice else "email_account_id"
    ids = choice.get("email_account_ids") or [choice["email_account_id"]]
    if not profile.has_smartlead_key:
        raise bad_request(
            "Connect a Smartlead API key before choosing an email account.",
            "no_api_key",
            field=field,
        )
    if not profile.key_is_readable():
        raise unreadable_key(field=field)
    try:
        chosen, missing = profile.choose_smartlead_email_accounts(ids)
    except SmartleadError as exc:
        raise smartlead_failure(exc) from None
    if missing:
        named = ", ".join(map(str, missing))
        which = f"email account {named} is" if len(missing) == 1 else f"email accounts {named} are"
        raise bad_request(
            f"{field}: {which} not in the Smartlead account of your API key.",
            "email_account_not_owned",
            field=field,
        )
    return Response(ConnectionSerializer(connection_data(profile, accounts=chosen)).data)
