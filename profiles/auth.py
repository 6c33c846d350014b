"""Supabase access tokens for the connect API, verified locally (no call to Supabase per request).

A token is accepted when it is signed by one of the project's published asymmetric keys (JWKS,
ES256/RS256) or, for projects still on the legacy shared secret, by SUPABASE_JWT_SECRET (HS256).
The algorithm is chosen by where the key comes from, never by the token alone: an HS256 token is
only ever checked against the shared secret, so a public key can never act as an HMAC secret.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import requests
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
)
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from outboundhq import logs
from profiles.models import Profile
from profiles.serializers import BoundedJSONParser

log = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
AUDIENCE = "authenticated"
LEEWAY_SECONDS = 10  # clock skew between Supabase and us
MAX_TOKEN_LENGTH = 8192  # Supabase tokens are ~1 KB; anything huge is not worth parsing
JWKS_TIMEOUT = (3.05, 5.0)  # (connect, read) seconds
CHALLENGE = 'Bearer realm="api"'

# Tests replace the clock to step past the refresh limits without sleeping.
_clock: Callable[[], float] = time.monotonic


class SigningKeysUnavailable(exceptions.APIException):
    """We have no key to check the token with because Supabase's JWKS cannot be fetched."""

    status_code = 503
    default_detail = "Sign-in cannot be verified right now; try again in a minute."
    default_code = "jwks_unavailable"


class JWKSCache:
    """The project's signing keys, fetched once and then again only when needed.

    Refetched when older than SUPABASE_JWKS_CACHE_SECONDS, or when a token names a key we don't
    have (Supabase rotated keys). Refetches are at most one per SUPABASE_JWKS_MIN_REFRESH_SECONDS,
    so a flood of tokens with made-up `kid`s costs Supabase one request, not one each. A failed
    refetch keeps the keys we had: an outage at Supabase must not sign everybody out.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            now = _clock()
            if (kid not in self._keys or self._expired(now)) and self._may_refresh(now):
                self._refresh(now)
            if self._fetched_at is None:
                raise SigningKeysUnavailable()
            return self._keys.get(kid)

    def _expired(self, now: float) -> bool:
        ttl = getattr(settings, "SUPABASE_JWKS_CACHE_SECONDS", 600)
        return self._fetched_at is None or now - self._fetched_at >= ttl

    def _may_refresh(self, now: float) -> bool:
        interval = getattr(settings, "SUPABASE_JWKS_MIN_REFRESH_SECONDS", 30)
        return self._attempted_at is None or now - self._attempted_at >= interval

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            response = requests.get(self.url, timeout=JWKS_TIMEOUT, allow_redirects=False)
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (requests.RequestException, ValueError) as exc:
            log.warning("Could not fetch Supabase signing keys from %s: %s", self.url, exc)
            return
        self._keys, self._fetched_at = keys, now


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS by `kid`: asymmetric ones only, each bound to its algorithm."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys = {}
    for entry in document["keys"]:
        # A symmetric ("oct") key in a JWKS would let anyone who can read the JWKS sign tokens.
        if (
            not isinstance(entry, dict)
            or entry.get("kty") not in ("EC", "RSA")
            or not entry.get("kid")
        ):
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if key.algorithm_name in ASYMMETRIC_ALGORITHMS:
            keys[entry["kid"]] = key
    return keys


_caches: dict[str, JWKSCache] = {}
_caches_lock = threading.Lock()


def jwks_cache() -> JWKSCache | None:
    """The cache for the configured project, or None when SUPABASE_URL is not set."""
    base = (settings.SUPABASE_URL or "").rstrip("/")
    if not base:
        return None
    url = f"{base}/auth/v1/.well-known/jwks.json"
    with _caches_lock:
        return _caches.setdefault(url, JWKSCache(url))


def clear_jwks_cache() -> None:
    """Forget every fetched key (tests; a new process starts this way)."""
    with _caches_lock:
        _caches.clear()


def verify_token(token: str) -> dict[str, Any]:
    """The token's claims when it is genuine, current and a signed-in user's; else raises."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise exceptions.AuthenticationFailed("The access token is too long to be genuine.")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise exceptions.AuthenticationFailed("The access token is malformed.") from None
    key, algorithm = _verification_key(header)
    base = (settings.SUPABASE_URL or "").rstrip("/")
    # Supabase Auth issues as <project>/auth/v1; a token from another project or issuer that
    # shares the signing key (the legacy HS256 secret) must not pass for one of ours.
    issuer = f"{base}/auth/v1" if base else None
    required = ["exp", "aud", "sub"] + (["iss"] if issuer else [])
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise exceptions.AuthenticationFailed("The access token has expired.") from None
    except jwt.InvalidAudienceError:
        raise exceptions.AuthenticationFailed("The access token is not for this API.") from None
    except jwt.InvalidIssuerError:
        raise exceptions.AuthenticationFailed("The access token is from another issuer.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise exceptions.AuthenticationFailed(f"The access token has no {exc.claim}.") from None
    except jwt.InvalidTokenError:
        raise exceptions.AuthenticationFailed("The access token is not valid.") from None
    if claims.get("role", AUDIENCE) != AUDIENCE:
        # The project's anon key is itself a signed JWT: it proves nothing about a user.
        raise exceptions.AuthenticationFailed("Sign in first: this token is not a user's.")
    return claims


def _verification_key(header: dict[str, Any]) -> tuple[jwt.PyJWK | str, str]:
    algorithm = header.get("alg")
    if algorithm == "HS256" and settings.SUPABASE_JWT_SECRET:
        return settings.SUPABASE_JWT_SECRET, "HS256"
    cache = jwks_cache() if algorithm in ASYMMETRIC_ALGORITHMS else None
    if cache is None:
        raise exceptions.AuthenticationFailed("The access token's signing algorithm is refused.")
    kid = header.get("kid")
    key = cache.key(kid) if isinstance(kid, str) and kid else None
    if key is None:
        raise exceptions.AuthenticationFailed("The access token is signed by an unknown key.")
    # PyJWK is bound to its own algorithm, so a token claiming another one fails to verify.
    return key, key.algorithm_name


def profile_for(claims: dict[str, Any]) -> Profile:
    try:
        profile_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise exceptions.AuthenticationFailed("The token's subject is not a user id.") from None
    profile = Profile.objects.filter(pk=profile_id).first()
    if profile is None:
        raise exceptions.PermissionDenied(
            "You are signed in, but this user has no OutboundHQ profile yet."
        )
    return profile


class SupabaseJWTAuthentication(BaseAuthentication):
    """`Authorization: Bearer <Supabase access token>`; `request.user` becomes the Profile."""

    def authenticate(self, request: Request) -> tuple[Profile, dict[str, Any]] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            # No credentials offered: the permission check answers 401 with the challenge.
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "The Authorization header must be `Bearer <token>`."
            )
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The access token is malformed.") from None
        claims = verify_token(token)
        profile = profile_for(claims)
        logs.profile_id.set(str(profile.id))
        return profile, claims

    def authenticate_header(self, request: Request) -> str:
        return CHALLENGE


class IsSignedIn(BasePermission):
    """A verified Supabase user with a profile (request.user is then a Profile)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Profile)


def user_api(methods: list[str]) -> Callable[[Callable[..., Any]], Any]:
    """`@api_view` for the web app's endpoints: a signed-in SDR, small JSON bodies."""

    def decorate(view: Callable[..., Any]) -> Any:
        view = parser_classes([BoundedJSONParser])(view)
        view = permission_classes([IsSignedIn])(view)
        view = authentication_classes([SupabaseJWTAuthentication])(view)
        return api_view(methods)(view)

    return decorate


class SupabaseJWTScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the authentication above."""

    target_class = "profiles.auth.SupabaseJWTAuthentication"
    name = "SupabaseAccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The signed-in user's Supabase access token.",
        }
