"""What the connect API accepts and answers, and how every refusal is shaped.

Every error body is `{"error": "<sentence>", "code": "<machine name>"}`; validation errors add
`"field"` (the first field at fault) and `"fields"` (all of them), so the web app can put the
message next to the right input.
"""

from __future__ import annotations

import io
import math
from typing import Any

from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser

from profiles.credentials import SmartleadStatus
from profiles.mailboxes import health_problem
from profiles.models import CredentialCheck, Profile
from smartlead.api import (
    EmailAccount,
    InvalidApiKey,
    NoApiAccess,
    NotFound,
    RateLimited,
    SmartleadError,
)
from smartlead.api import ValidationFailed as SmartleadValidationFailed

MAX_BODY_BYTES = 64 * 1024
MAX_MAILBOXES = 100  # as many as one reallocate-mailboxes call names


# --- Errors ------------------------------------------------------------------------------
class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = f"The request body is larger than {MAX_BODY_BYTES // 1024} KB."
    default_code = "too_large"


class BadGateway(exceptions.APIException):
    status_code = 502
    default_code = "smartlead_unavailable"


class BudgetSpent(exceptions.APIException):
    status_code = 429
    default_code = "smartlead_budget_spent"


class Conflict(exceptions.APIException):
    status_code = 409
    default_code = "conflict"


def problem(
    exc_class: type[exceptions.APIException], message: str, code: str, **extra: Any
) -> exceptions.APIException:
    """An API error whose body is `{"error", "code", ...}` rather than DRF's `{"detail"}`."""
    return exc_class({"error": message, "code": code, **extra})


def bad_request(message: str, code: str, **extra: Any) -> exceptions.APIException:
    return problem(exceptions.ValidationError, message, code, **extra)


def unreadable_key(**extra: Any) -> exceptions.APIException:
    """The saved key cannot be decrypted here (the server lost its encryption key); saving the
    key again stores it under the current one."""
    return bad_request(
        "Your saved Smartlead API key cannot be read by the server; connect it again.",
        "unreadable_key",
        **extra,
    )


def smartlead_failure(exc: SmartleadError, *, prefix: str = "") -> exceptions.APIException:
    """400 when the SDR can fix it (key, plan, Smartlead data); 502 when Smartlead failed."""
    if isinstance(exc, InvalidApiKey):
        message, code = (
            "Smartlead rejected this API key (invalid or revoked). Copy a current key from "
            "Smartlead → Settings → API key.",
            "invalid_api_key",
        )
    elif isinstance(exc, NoApiAccess):
        message, code = (
            "Smartlead refused API access: the Smartlead plan must include API access "
            "(Pro or higher).",
            "no_api_access",
        )
    elif isinstance(exc, SmartleadValidationFailed | NotFound):
        message, code = f"Smartlead refused the request: {exc}", "smartlead_refused"
    elif isinstance(exc, RateLimited):
        # Not Smartlead's failure: the key's request budget, shared with the executor and the
        # SDR's other tools, is used up for now. Answered before Smartlead would say 429.
        seconds = max(1, math.ceil(exc.retry_after))
        failure = problem(
            BudgetSpent,
            f"{prefix}Smartlead's request budget for this API key is used up for now (it is "
            f"shared with sending and your other Smartlead tools); try again in {seconds} s.",
            "smartlead_budget_spent",
            retry_after=seconds,
        )
        failure.wait = seconds  # DRF sends it as Retry-After
        return failure
    else:
        message = f"Smartlead could not be reached or failed: {exc}"
        return problem(BadGateway, prefix + message, "smartlead_unavailable")
    return bad_request(prefix + message, code)


class BoundedJSONParser(JSONParser):
    """JSON, refused past 64 KB before it is parsed: these endpoints take a few short fields."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise RequestTooLarge({"error": RequestTooLarge.default_detail, "code": "too_large"})
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            # JSON nested a few thousand levels deep: DRF turns only ValueError into a 400.
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The serializer's validated data, or a 400 naming the field at fault."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return serializer.validated_data
    errors = serializer.errors
    field = next(iter(errors))
    first = _first_error(errors[field])
    if field == "non_field_errors":  # the body is not a JSON object at all
        field = "body"
    raise bad_request(f"{field}: {first}", "invalid", field=field, fields=errors)


def _first_error(errors: Any) -> str:
    """The first message of a field's errors; a list's item errors say which item."""
    if isinstance(errors, dict):
        index, inner = next(iter(errors.items()))
        return f"item {index}: {_first_error(inner)}"
    return str(errors[0] if isinstance(errors, list) else errors)


# --- Input -------------------------------------------------------------------------------
class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would quietly turn 123 into "123"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ApiKeyInput(serializers.Serializer):
    api_key = StrictCharField(max_length=200, help_text="The Smartlead API key.")

    def validate_api_key(self, value: str) -> str:
        problem = api_key_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


def api_key_problem(value: str) -> str | None:
    """What is wrong with a pasted key's text, before Smartlead is asked about it."""
    # Keys are printable ASCII without spaces; anything else is a paste accident.
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        return "must not contain spaces, line breaks or non-ASCII characters."
    return None


def mailbox_id_field(**options: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=2**63 - 1, **options)


class EmailAccountChoice(serializers.Serializer):
    email_account_ids = serializers.ListField(
        child=mailbox_id_field(),
        min_length=1,
        max_length=MAX_MAILBOXES,
        required=False,
        help_text="The Smartlead email accounts to send from, in order (the first is the "
        "profile's own). Smartlead rotates a campaign's mailboxes itself.",
    )
    email_account_id = mailbox_id_field(
        required=False, help_text="One email account: the same as a list of one (older clients)."
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("email_account_ids" in data) == ("email_account_id" in data):
            raise serializers.ValidationError(
                {
                    "email_account_ids": "send a list of email account ids, or email_account_id, "
                    "but one of the two."
                }
            )
        ids = data.get("email_account_ids", [])
        twice = next((i for n, i in enumerate(ids) if i in ids[:n]), None)
        if twice is not None:
            raise serializers.ValidationError(
                {"email_account_ids": f"email account {twice} is listed twice."}
            )
        return data


# --- Output ------------------------------------------------------------------------------
class EmailAccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    from_email = serializers.CharField()
    from_name = serializers.CharField()
    type = serializers.CharField(help_text="GMAIL, OUTLOOK, SMTP…")
    smtp_ok = serializers.BooleanField()
    imap_ok = serializers.BooleanField()
    daily_limit = serializers.IntegerField(allow_null=True)
    warmup_status = serializers.CharField(allow_null=True)
    suspended = serializers.BooleanField()
    warmup_reputation = serializers.FloatField(allow_null=True)
    healthy = serializers.BooleanField(help_text="Smartlead's readings let it send.")
    problem = serializers.CharField(allow_blank=True, help_text="Why not, in words.")


class ChosenAccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    from_email = serializers.CharField(allow_null=True)
    from_name = serializers.CharField(allow_null=True)


class MailboxSerializer(ChosenAccountSerializer):
    state = serializers.ChoiceField(
        choices=["healthy", "unchecked", "unhealthy", "failed"],
        help_text="healthy/unchecked: sends; unhealthy/failed: detached from the SDR's campaigns "
        "until a health read shows it healthy (docs/CONNECT_API.md).",
    )
    healthy = serializers.BooleanField()
    problem = serializers.CharField(allow_blank=True)
    smtp_ok = serializers.BooleanField(allow_null=True)
    imap_ok = serializers.BooleanField(allow_null=True)
    suspended = serializers.BooleanField()
    warmup_reputation = serializers.FloatField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    failure_at = serializers.DateTimeField(allow_null=True)


class ConnectionSerializer(serializers.Serializer):
    connected = serializers.BooleanField(
        help_text="The executor sends for this SDR: a key, a valid mailbox, no refusal on "
        "record, and a mailbox that may send."
    )
    status = serializers.ChoiceField(choices=SmartleadStatus.choices)
    status_label = serializers.CharField()
    api_key_last4 = serializers.CharField(allow_null=True)
    email_account = ChosenAccountSerializer(
        allow_null=True, help_text="The first mailbox (profiles.smartlead_email_account_id)."
    )
    mailboxes = MailboxSerializer(many=True, help_text="Every mailbox chosen, with its health.")
    checked_at = serializers.DateTimeField(allow_null=True)
    check_detail = serializers.CharField(allow_blank=True)
    smartlead_error = serializers.CharField(
        allow_null=True, help_text="Set when Smartlead could not be asked just now."
    )


class ConnectResultSerializer(ConnectionSerializer):
    email_accounts = EmailAccountSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    code = serializers.CharField(required=False)
    field = serializers.CharField(required=False)


def connection_data(
    profile: Profile,
    *,
    accounts: list[EmailAccount] | None = None,
    smartlead_error: str | None = None,
) -> dict[str, Any]:
    """The connection as the web app shows it. Never the key: at most its last 4 characters."""
    status = profile.smartlead_status()
    rows = profile.mailbox_rows()
    check = CredentialCheck.objects.filter(profile_id=profile.id).first()
    listed = {a.id: a for a in accounts or []}
    data = {
        "connected": profile.is_connected,
        "status": status.value,
        "status_label": status.label,
        "api_key_last4": profile.api_key_hint.removeprefix("…") or None,
        "email_account": None,
        "mailboxes": [],
        "checked_at": check.checked_at if check else None,
        "check_detail": check.detail if check else "",
        "smartlead_error": smartlead_error,
    }
    for row in rows:
        account = listed.get(row.mailbox_id)
        data["mailboxes"].append(
            {
                "id": row.mailbox_id,
                "from_email": account.from_email if account else row.address or None,
                "from_name": account.from_name if account else row.from_name or None,
                "state": row.state,
                "healthy": row.healthy,
                "problem": row.why_not,
                **{f: getattr(row, f) for f in ("smtp_ok", "imap_ok", "suspended")},
                **{f: getattr(row, f) for f in ("warmup_reputation", "read_at", "failure_at")},
            }
        )
    if rows:
        data["email_account"] = {
            k: data["mailboxes"][0][k] for k in ("id", "from_email", "from_name")
        }
    return data


def account_data(account: EmailAccount) -> dict[str, Any]:
    """One of the key's email accounts as the web app sees it, with its health verdict."""
    problem = health_problem(account)
    return account.as_dict() | {"healthy": not problem, "problem": problem}
