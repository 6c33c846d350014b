"""Where the Smartlead request budgets live (smartlead/api/limits.py has the rules): in Redis when
REDIS_URL is set, else in Postgres (no server to add), so every process and machine using an
SDR's key draws from one budget. SQLite, the embedded default of one process, keeps them in
memory. Both shared stores decide on their own server's clock, so machines whose clocks differ
still agree, and each decision is one atomic step per key.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.db import DatabaseError, connection

from smartlead.api import limits
from smartlead.api.limits import MemoryStore, Store, earliest

log = logging.getLogger(__name__)
TABLE = "outboundhq_request_budget"  # smartlead.models.RequestBudget
IDLE_SECONDS = 2 * 3600  # a key unused this long has nothing left in any window


class PostgresStore:
    """One row per key: the times of its latest requests (seconds, on the database's clock).
    Its statements run in autocommit on the caller's connection: no Smartlead call is made
    inside a transaction, which would hold the key's row for every other process."""

    def take(
        self, key: str, windows: list[tuple[int, float]], kept: int, *, record: bool = True
    ) -> float:
        if record and self._record(key, windows, kept):
            return 0.0
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {NOW}, slots, paused_until FROM {TABLE} WHERE key = %s",  # noqa: S608
                [key],
            )
            row = cursor.fetchone()
        if row is None:  # asked, not recorded, before the key's first request
            return 0.0
        now, slots, paused = row
        wait = earliest(list(slots), now, paused, windows)
        # Not recorded: if room opened since the UPDATE, the caller asks again at once.
        return max(wait, 0.001) if record else wait

    def _record(self, key: str, windows: list[tuple[int, float]], kept: int) -> bool:
        """One statement decides and records, a key's first request included (its row is made
        with it): the row lock orders concurrent callers, and each re-checks the windows on the
        row as the one before it left it."""
        b = TABLE
        room = " AND ".join(
            f"(cardinality({b}.slots) < {int(n)} OR "
            f"{b}.slots[cardinality({b}.slots) - {int(n)} + 1] <= {NOW} - {float(w)})"
            for n, w in windows
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {b} (key, slots, paused_until, used_at) "  # noqa: S608 - numbers
                f"VALUES (%s, ARRAY[{NOW}], 0, now()) ON CONFLICT (key) DO UPDATE "
                f"SET slots = ({b}.slots || {NOW})[greatest(1, cardinality({b}.slots) + 2 - %s):], "
                f"used_at = now() WHERE {b}.paused_until <= {NOW} AND {room}",
                [key, kept],
            )
            return bool(cursor.rowcount)

    def pause(self, key: str, seconds: float) -> None:
        self._ensure(key)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET paused_until = greatest(paused_until, {NOW} + %s) "  # noqa: S608
                "WHERE key = %s",
                [float(seconds), key],
            )

    def used(self, key: str, windows: list[float]) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {NOW}, slots FROM {TABLE} WHERE key = %s", [key])  # noqa: S608
            row = cursor.fetchone()
        if row is None:
            return [0 for _ in windows]
        now, slots = row
        return [sum(1 for t in slots if t > now - w) for w in windows]

    def _ensure(self, key: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (key, slots, paused_until, used_at) "  # noqa: S608
                "VALUES (%s, '{}', 0, now()) ON CONFLICT (key) DO NOTHING",
                [key],
            )

    @staticmethod
    def prune() -> int:
        """Keys unused for IDLE_SECONDS have nothing left in any window: their rows go, so keys
        tried once (a typo at the connect API) are not kept for ever (the watchdog calls it)."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE used_at < now() - %s * interval '1 second'",  # noqa: S608
                [IDLE_SECONDS],
            )
            return cursor.rowcount


NOW = "extract(epoch from clock_timestamp())::float8"

# Redis: the same decision in one script, on Redis's clock (TIME). KEYS: the key's sorted set of
# request times and its pause; ARGV: a unique member, how many to keep, then limit, window pairs.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local wait = tonumber(redis.call('GET', KEYS[2]) or '0') - now
if wait < 0 then wait = 0 end
local n = redis.call('ZCARD', KEYS[1])
for i = 4, #ARGV, 2 do
  local limit, window = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if n >= limit then
    local e = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
    local free = tonumber(e[2]) + window - now
    if free > wait then wait = free end
  end
end
if wait > 0 or ARGV[3] == '0' then return tostring(wait) end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local keep = tonumber(ARGV[2])
if n + 1 > keep then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - keep) end
redis.call('EXPIRE', KEYS[1], 7200)
return '0'
"""
PAUSE = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], tostring(until_), 'EX', math.ceil(tonumber(ARGV[1])) + 60)
end
return 1
"""
USED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local counts = {}
for i = 1, #ARGV do
  counts[i] = redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[i])), '+inf')
end
return counts
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._take = self._redis.register_script(TAKE)
        self._pause = self._redis.register_script(PAUSE)
        self._used = self._redis.register_script(USED)

    def take(
        self, key: str, windows: list[tuple[int, float]], kept: int, *, record: bool = True
    ) -> float:
        args = [uuid.uuid4().hex, kept, 1 if record else 0]
        for limit, window in windows:
            args += [limit, window]
        keys = [f"smartlead:budget:{key}", f"smartlead:paused:{key}"]
        return float(self._take(keys=keys, args=args))

    def pause(self, key: str, seconds: float) -> None:
        self._pause(keys=[f"smartlead:paused:{key}"], args=[float(seconds)])

    def used(self, key: str, windows: list[float]) -> list[int]:
        return [int(n) for n in self._used(keys=[f"smartlead:budget:{key}"], args=windows)]


def chosen() -> Store:
    """The store SMARTLEAD_BUDGET_STORE names; `auto`: Redis with REDIS_URL, else Postgres
    when the database is, else this process's memory."""
    name = settings.SMARTLEAD_BUDGET_STORE
    if name == "auto":
        on_postgres = connection.vendor == "postgresql"
        name = "redis" if settings.REDIS_URL else ("postgres" if on_postgres else "memory")
    if name == "redis":
        return RedisStore(settings.REDIS_URL)
    if name == "postgres":
        return PostgresStore()
    return MemoryStore()


def install() -> None:
    """Start-up (SmartleadConfig.ready): every budget from now on lives in the chosen store."""
    try:
        limits.use_store(chosen())
    except (DatabaseError, ImportError) as exc:  # the check names the variable to fix
        log.error("Smartlead request budgets stay in memory: %s", exc)
