"""Secrets the benchmarks run with: production settings need them, and none is a real one."""

DJANGO_SECRET_KEY = "bench-only-secret-key-" + "x" * 40
# base64 of "bench-only-fernet-key-0123456789": encrypts the bench SDRs' Smartlead keys.
SMARTLEAD_KEY_ENCRYPTION_KEYS = "YmVuY2gtb25seS1mZXJuZXQta2V5LTAxMjM0NTY3ODk="
