"""Supabase access tokens: verified locally against a served JWKS or the legacy secret."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client

from profiles import auth
from profiles.models import Profile
from tests.factories import make_profile

pytestmark = pytest.mark.django_db

SUPABASE_URL = "https://project-ref.supabase.test"
JWKS_URL = f"{SUPABASE_URL}/auth/v1/.well-known/jwks.json"
LEGACY_SECRET = "legacy-supabase-jwt-secret-with-at-least-32-characters"
CONNECTION = "/api/smartlead/connection"


class SigningKey:
    """A private key of ours and the public JWK Supabase would publish for it."""

    def __init__(self, algorithm: str, kid: str | None = None) -> None:
        self.algorithm = algorithm
        self.kid = kid or f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}"
        if algorithm == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = jwk | {"kid": self.kid, "alg": algorithm, "use": "sig"}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid} | headers
        )


class Supabase:
    """The project's JWKS endpoint, faked with `responses`; `keys` can change between requests."""

    def __init__(self, rsps: responses.RequestsMock, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.status = 200
        self.fetches = 0
        rsps.add_callback(responses.GET, JWKS_URL, callback=self._serve)

    def _serve(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.fetches += 1
        return self.status, {}, json.dumps({"keys": [k.jwk for k in self.keys]})


def claims_for(profile: Profile | None = None, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    sub = str(profile.id) if profile else str(uuid.uuid4())
    return {
        "sub": sub,
        "aud": "authenticated",
        "role": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "iss": f"{SUPABASE_URL}/auth/v1",
        "email": profile.email if profile else "someone@example.test",
    } | overrides


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(auth, "_clock", fake)
    return fake


@pytest.fixture(autouse=True)
def supabase_settings(settings: Any) -> None:
    settings.SUPABASE_URL = SUPABASE_URL
    settings.SUPABASE_JWT_SECRET = ""
    auth.clear_jwks_cache()


@pytest.fixture
def es_key() -> SigningKey:
    return SigningKey("ES256")


@pytest.fixture
def supabase(es_key: SigningKey) -> Iterator[Supabase]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield Supabase(rsps, es_key)


@pytest.fixture
def sdr() -> Profile:
    return make_profile(connected=False)


def get(client: Client, token: str | None = None, **extra: Any) -> Any:
    headers = bearer(token) if token else {}
    return client.get(CONNECTION, **headers, **extra)


# --- Accepted ----------------------------------------------------------------------------
def test_a_valid_es256_token_signs_the_user_in(client, supabase, es_key, sdr):
    response = get(client, es_key.token(claims_for(sdr)))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "no_api_key"


def test_a_valid_rs256_token_signs_the_user_in(client, supabase, sdr):
    rs_key = SigningKey("RS256")
    supabase.keys.append(rs_key)
    assert get(client, rs_key.token(claims_for(sdr))).status_code == 200


def test_a_legacy_hs256_token_is_accepted_when_the_secret_is_configured(client, settings, sdr):
    settings.SUPABASE_JWT_SECRET = LEGACY_SECRET
    token = jwt.encode(claims_for(sdr), LEGACY_SECRET, algorithm="HS256")
    assert get(client, token).status_code == 200


def test_the_jwks_is_fetched_once_and_then_cached(client, supabase, es_key, sdr):
    for _ in range(3):
        assert get(client, es_key.token(claims_for(sdr))).status_code == 200
    assert supabase.fetches == 1


# --- No or malformed credentials ---------------------------------------------------------
def test_no_token_is_401_with_a_bearer_challenge(client, sdr):
    response = get(client)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "error" in response.json()


def test_another_authorization_scheme_counts_as_no_token(client, sdr):
    response = client.get(CONNECTION, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-jwt", "Bearer ü"])
def test_a_malformed_bearer_header_is_401_with_a_reason(client, header):
    response = client.get(CONNECTION, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# --- Refused tokens ----------------------------------------------------------------------
def test_an_expired_token_is_refused(client, supabase, es_key, sdr):
    token = es_key.token(claims_for(sdr, exp=int(time.time()) - 120))
    response = get(client, token)
    assert response.status_code == 401
    assert response.json() == {"error": "The access token has expired."}


def test_a_token_for_another_audience_is_refused(client, supabase, es_key, sdr):
    response = get(client, es_key.token(claims_for(sdr, aud="some-other-api")))
    assert response.status_code == 401
    assert "not for this API" in response.json()["error"]


def test_it_refuses_a_token_from_another_issuer(client, supabase, es_key, sdr):
    claims = claims_for(sdr, iss="https://other-project.supabase.co/auth/v1")
    response = get(client, es_key.token(claims))
    assert response.status_code == 401
    assert "another issuer" in response.json()["error"]


@pytest.mark.parametrize("claim", ["exp", "aud", "sub", "iss"])
def test_a_token_missing_a_required_claim_is_refused(client, supabase, es_key, sdr, claim):
    claims = claims_for(sdr)
    del claims[claim]
    response = get(client, es_key.token(claims))
    assert response.status_code == 401
    assert claim in response.json()["error"]


def test_an_anon_token_is_refused(client, supabase, es_key, sdr):
    response = get(client, es_key.token(claims_for(sdr, role="anon")))
    assert response.status_code == 401
    assert "not a user's" in response.json()["error"]


def test_a_tampered_payload_is_refused(client, supabase, es_key, sdr):
    other = make_profile(connected=False)
    header, _, signature = es_key.token(claims_for(sdr)).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims_for(other)).encode()).rstrip(b"=")
    response = get(client, f"{header}.{forged.decode()}.{signature}")
    assert response.status_code == 401
    assert response.json() == {"error": "The access token is not valid."}


def test_a_token_signed_by_a_key_supabase_never_published_is_refused(client, supabase, sdr):
    impostor = SigningKey("ES256", kid="not-published")
    assert get(client, impostor.token(claims_for(sdr))).status_code == 401


def test_a_token_signed_with_another_key_under_a_known_kid_is_refused(
    client, supabase, es_key, sdr
):
    impostor = SigningKey("ES256", kid=es_key.kid)
    response = get(client, impostor.token(claims_for(sdr)))
    assert response.status_code == 401
    assert response.json() == {"error": "The access token is not valid."}


def test_alg_none_is_refused(client, supabase, es_key, sdr):
    unsigned = jwt.encode(claims_for(sdr), None, algorithm="none", headers={"kid": es_key.kid})
    response = get(client, unsigned)
    assert response.status_code == 401
    assert "algorithm" in response.json()["error"]


def test_hs256_is_refused_when_no_legacy_secret_is_configured(client, supabase, sdr):
    token = jwt.encode(claims_for(sdr), LEGACY_SECRET, algorithm="HS256")
    assert get(client, token).status_code == 401


@pytest.mark.parametrize("secret_configured", [False, True])
def test_hs256_signed_with_the_published_public_key_is_refused(
    client, settings, supabase, es_key, sdr, secret_configured
):
    """The classic algorithm confusion: the public key used as an HMAC secret."""
    settings.SUPABASE_JWT_SECRET = LEGACY_SECRET if secret_configured else ""
    header = json.dumps({"alg": "HS256", "typ": "JWT", "kid": es_key.kid}).encode()
    payload = json.dumps(claims_for(sdr)).encode()
    segments = [base64.urlsafe_b64encode(part).rstrip(b"=") for part in (header, payload)]
    signing_input = b".".join(segments)
    mac = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    signature = base64.urlsafe_b64encode(mac.sign(signing_input, es_key.public_pem)).rstrip(b"=")
    response = get(client, (signing_input + b"." + signature).decode())
    assert response.status_code == 401


def test_a_token_claiming_rs256_for_an_ec_key_is_refused(client, supabase, es_key, sdr):
    rs_key = SigningKey("RS256", kid=es_key.kid)  # signs RS256 but names the EC key's kid
    assert get(client, rs_key.token(claims_for(sdr))).status_code == 401


def test_symmetric_keys_in_a_jwks_are_never_used(client, supabase, sdr):
    secret = b"published-symmetric-secret-0123456789abcdef"
    oct_jwk = {"kty": "oct", "kid": "oct-1", "alg": "HS256", "k": base64.urlsafe_b64encode(secret)}
    oct_jwk["k"] = oct_jwk["k"].decode().rstrip("=")

    class OctKey:
        jwk = oct_jwk

    supabase.keys.append(OctKey())
    token = jwt.encode(claims_for(sdr), secret, algorithm="HS256", headers={"kid": "oct-1"})
    assert get(client, token).status_code == 401
    assert "oct-1" not in auth.jwks_cache()._keys


def test_a_subject_that_is_not_a_user_id_is_refused(client, supabase, es_key):
    response = get(client, es_key.token(claims_for(sub="service-account")))
    assert response.status_code == 401
    assert "subject" in response.json()["error"]


def test_a_valid_token_without_a_profile_is_403_saying_so(client, supabase, es_key):
    response = get(client, es_key.token(claims_for()))
    assert response.status_code == 403
    assert "no OutboundHQ profile" in response.json()["error"]


def test_an_oversized_token_is_refused_without_parsing(client, supabase):
    assert get(client, "a" * 10_000).status_code == 401
    assert supabase.fetches == 0


# --- Key rotation and the JWKS cache -----------------------------------------------------
def test_an_unknown_kid_triggers_one_jwks_refresh(client, supabase, es_key, sdr, clock):
    assert get(client, es_key.token(claims_for(sdr))).status_code == 200
    rotated = SigningKey("ES256")
    supabase.keys.append(rotated)
    clock.now += 31  # past the minimum interval between refreshes
    assert get(client, rotated.token(claims_for(sdr))).status_code == 200
    assert supabase.fetches == 2


def test_a_flood_of_unknown_kids_costs_supabase_one_request(client, supabase, es_key, sdr, clock):
    assert get(client, es_key.token(claims_for(sdr))).status_code == 200
    clock.now += 31
    for n in range(20):
        forged = SigningKey("ES256", kid=f"random-{n}")
        assert get(client, forged.token(claims_for(sdr))).status_code == 401
    assert supabase.fetches == 2


def test_the_jwks_is_refetched_once_its_cache_time_is_over(
    client, settings, supabase, es_key, sdr, clock
):
    settings.SUPABASE_JWKS_CACHE_SECONDS = 600
    assert get(client, es_key.token(claims_for(sdr))).status_code == 200
    clock.now += 601
    assert get(client, es_key.token(claims_for(sdr))).status_code == 200
    assert supabase.fetches == 2


def test_known_keys_keep_working_while_supabase_is_down(client, supabase, es_key, sdr, clock):
    assert get(client, es_key.token(claims_for(sdr))).status_code == 200
    supabase.status = 503
    clock.now += 3600
    assert get(client, es_key.token(claims_for(sdr))).status_code == 200
    assert supabase.fetches == 2


def test_without_any_signing_keys_the_answer_is_503_not_401(client, supabase, es_key, sdr):
    supabase.status = 500
    response = get(client, es_key.token(claims_for(sdr)))
    assert response.status_code == 503
    assert "cannot be verified" in response.json()["error"]


def test_asymmetric_tokens_are_refused_when_supabase_url_is_not_set(
    client, settings, supabase, es_key, sdr
):
    settings.SUPABASE_URL = ""
    assert get(client, es_key.token(claims_for(sdr))).status_code == 401
    assert supabase.fetches == 0


# --- CORS, schema --------------------------------------------------------------------------
def test_a_preflight_from_the_web_app_is_allowed(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.outboundhq.test"]
    response = client.options(
        CONNECTION,
        HTTP_ORIGIN="https://app.outboundhq.test",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://app.outboundhq.test"
    assert "authorization" in response["Access-Control-Allow-Headers"]


def test_a_preflight_from_another_origin_is_not_allowed(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.outboundhq.test"]
    response = client.options(
        CONNECTION,
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )
    assert "Access-Control-Allow-Origin" not in response


def test_the_openapi_schema_documents_the_connect_api(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    for route in (
        "/api/smartlead/connection",
        "/api/smartlead/connection/email-account",
        "/api/sequences/{id}/activate",
        "/api/sequences/{id}/pause",
    ):
        assert route in schema["paths"]
    assert schema["components"]["securitySchemes"]["SupabaseAccessToken"]["scheme"] == "bearer"


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_pages_are_served(client, url):
    assert client.get(url).status_code == 200
