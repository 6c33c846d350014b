"""Smartlead keys at rest: `enc:v1:` + a Fernet token, in the same `profiles` column.

SMARTLEAD_KEY_ENCRYPTION_KEYS is a list (MultiFernet): the first key encrypts, every key
decrypts. Rotation puts a new key first, re-encrypts the rows (`encrypt_smartlead_keys`), then
drops the old key. A value without the prefix is a plain-text key written by an older client
(the web app wrote the column directly); it still works and is encrypted on first use.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# The version names the scheme, so a later one (another cipher, a KMS) can sit beside it.
PREFIX = "enc:v1:"


class UndecryptableKey(Exception):
    """A stored key that none of the configured encryption keys opens (lost or wrong key)."""


@lru_cache(maxsize=4)
def _keyring(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    if not keys:
        raise ImproperlyConfigured("SMARTLEAD_KEY_ENCRYPTION_KEYS is not set.")
    try:
        fernets = [Fernet(key.strip().encode()) for key in keys]
    except ValueError:  # binascii.Error is a ValueError; the message could quote the key
        raise ImproperlyConfigured(
            "SMARTLEAD_KEY_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe "
            "base64-encoded bytes each, from Fernet.generate_key())."
        ) from None
    return MultiFernet(fernets), fernets[0]


def keyring() -> tuple[MultiFernet, Fernet]:
    """All keys (to decrypt) and the newest one (to tell whether a token is current)."""
    return _keyring(tuple(settings.SMARTLEAD_KEY_ENCRYPTION_KEYS))


def is_encrypted(stored: str | None) -> bool:
    return bool(stored) and stored.startswith(PREFIX)


def encrypt(plain: str) -> str:
    return PREFIX + keyring()[0].encrypt(plain.encode()).decode()


def decrypt(stored: str) -> str:
    """The key in clear; a legacy plain-text value is returned as it is."""
    if not is_encrypted(stored):
        return stored
    try:
        return keyring()[0].decrypt(_token(stored)).decode()
    except InvalidToken:
        raise UndecryptableKey(
            "The stored Smartlead key cannot be decrypted with SMARTLEAD_KEY_ENCRYPTION_KEYS "
            "(the key that encrypted it is missing)."
        ) from None


def is_readable(stored: str) -> bool:
    try:
        decrypt(stored)
    except UndecryptableKey:
        return False
    return True


def is_well_formed(stored: str) -> bool:
    """Whether the value after the prefix is shaped like a Fernet token (version byte, time,
    IV, whole AES blocks, HMAC), as this service writes them. A value written by hand or by the
    browser is not, and no configured key missing explains it (profiles/checks.py)."""
    token = stored.removeprefix(PREFIX).strip()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return False
    # 1 version + 8 time + 16 IV + n*16 ciphertext + 32 HMAC
    return len(raw) >= 73 and raw[0] == 0x80 and (len(raw) - 57) % 16 == 0


def is_current(stored: str) -> bool:
    """Encrypted under the newest key: nothing left to do for it."""
    if not is_encrypted(stored):
        return False
    try:
        keyring()[1].decrypt(_token(stored))
    except InvalidToken:
        return False
    return True


def reencrypted(stored: str) -> str | None:
    """What to store instead (plain text encrypted, an older key's token rotated to the newest
    key), or None when the value is already current. Raises UndecryptableKey."""
    if not is_encrypted(stored):
        return encrypt(stored)
    if is_current(stored):
        return None
    decrypt(stored)  # the clear error when no key opens it
    return PREFIX + keyring()[0].rotate(_token(stored)).decode()


def _token(stored: str) -> bytes:
    return stored.removeprefix(PREFIX).encode()
