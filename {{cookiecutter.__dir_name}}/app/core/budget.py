"""Daily token budgets: TOKEN_BUDGET_PER_DAY (service), CLIENT_TOKEN_BUDGET_PER_DAY (per client).

Counted in the UTC day. Before an upstream call the flow reserves the most the call can use
(`call_tokens`: its max_tokens cap plus an estimate of its input); after it, `settle` replaces
the reservation with the tokens the upstream reported. A call is let through while the day's
spend plus the reservations in flight is below each budget, so a budget is passed by at most the
one reservation that crossed it. With REDIS_URL both checks run in one Lua script, shared by every
instance; without it each instance counts for itself (a budget per instance).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio

from app.core.config import Settings
from app.core.errors import ApiError
from app.core.shared_store import SharedStore, StoreUnavailable

# The input estimate: about four characters a token for English text (OpenAI's rule of thumb).
CHARS_PER_TOKEN = 4
# The day's counters outlive the day, for a look at yesterday, then go.
KEY_TTL_SECONDS = 2 * 86400
# (service spent, service reserved, client spent, client reserved)
Totals = tuple[int, int, int, int]


def call_tokens(max_tokens: int, input_chars: int) -> int:
    """What one call may cost at most: its output cap plus ceil(input characters / 4)."""
    return max_tokens + math.ceil(input_chars / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Reservation:
    client: str
    tokens: int
    day: str
    counted: bool = True  # False: let through uncounted (no budget reachable, BUDGET_FAIL_OPEN)


@dataclass(frozen=True)
class Spend:
    spent: int
    reserved: int
    budget: int  # 0: no budget

    @property
    def remaining(self) -> int | None:
        return max(0, self.budget - self.spent - self.reserved) if self.budget else None

    def as_dict(self) -> dict[str, int | None]:
        return {
            "spent": self.spent,
            "reserved": self.reserved,
            "budget": self.budget or None,
            "remaining": self.remaining,
        }


@dataclass(frozen=True)
class Report:
    day: str
    resets_in_seconds: int
    service: Spend
    client: Spend


class Ledger(Protocol):
    async def reserve(self, day: str, client: str, tokens: int, budgets: tuple[int, int]) -> int:
        """0 when reserved; 1 the service's or 2 the client's budget is used up."""

    async def settle(self, day: str, client: str, reserved: int, used: int) -> Totals: ...

    async def totals(self, day: str, client: str) -> Totals: ...


class MemoryLedger:
    """This instance's counts, for today only."""

    def __init__(self) -> None:
        self._day = ""
        self._counts: dict[str | None, list[int]] = {}  # None: the service; [spent, reserved]

    def _entries(self, day: str, client: str) -> tuple[list[int], list[int]]:
        if day != self._day:
            self._day, self._counts = day, {}
        return self._counts.setdefault(None, [0, 0]), self._counts.setdefault(client, [0, 0])

    async def reserve(self, day: str, client: str, tokens: int, budgets: tuple[int, int]) -> int:
        entries = self._entries(day, client)
        for which, (entry, budget) in enumerate(zip(entries, budgets, strict=True), start=1):
            if budget and sum(entry) >= budget:
                return which
        for entry in entries:
            entry[1] += tokens
        return 0

    async def settle(self, day: str, client: str, reserved: int, used: int) -> Totals:
        if day != self._day:  # reserved on a day whose counts are gone: nothing to settle
            return 0, 0, 0, 0
        entries = self._entries(day, client)
        for entry in entries:
            entry[0] += used
            entry[1] -= reserved
        return _totals(entries)

    async def totals(self, day: str, client: str) -> Totals:
        return _totals(self._entries(day, client))


def _totals(entries: tuple[list[int], list[int]]) -> Totals:
    (service_spent, service_reserved), (client_spent, client_reserved) = entries
    return service_spent, service_reserved, client_spent, client_reserved


# KEYS: the day's service and client hashes (fields spent, reserved).
# ARGV: tokens, service budget, client budget (0 = none), TTL in seconds. Returns the verdict
# (Ledger.reserve); `held` is a hash's spent plus reserved.
# A hash gets its TTL in the script that creates it (seen empty), not on every call: the TTL
# outlives the day whichever hour created it, and each EXPIRE is one more command per request.
RESERVE = """
local held = {}
for i = 1, 2 do
  local counts = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
  held[i] = (tonumber(counts[1]) or 0) + (tonumber(counts[2]) or 0)
  local budget = tonumber(ARGV[i + 1])
  if budget > 0 and held[i] >= budget then return i end
end
for i = 1, 2 do
  redis.call('HINCRBY', KEYS[i], 'reserved', ARGV[1])
  if held[i] == 0 then redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
return 0
"""
# ARGV: the reserved tokens, the tokens used, TTL in seconds. A hash found without spend may be
# one this call creates (Redis lost it since the reservation): it gets its TTL.
SETTLE = """
local totals = {}
for i = 1, 2 do
  totals[2 * i] = redis.call('HINCRBY', KEYS[i], 'reserved', -tonumber(ARGV[1]))
  totals[2 * i - 1] = redis.call('HINCRBY', KEYS[i], 'spent', ARGV[2])
  if totals[2 * i - 1] == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[i], ARGV[3]) end
end
return totals
"""


class RedisLedger:
    """The counts in Redis, shared by every instance: `SERVICE:budget:DAY:service|client:ID`."""

    def __init__(self, store: SharedStore) -> None:
        self.store = store
        self._reserve = store.client.register_script(RESERVE)
        self._settle = store.client.register_script(SETTLE)

    def _keys(self, day: str, client: str) -> list[str]:
        prefix = f"{self.store.prefix}:budget:{day}"
        return [f"{prefix}:service", f"{prefix}:client:{client}"]

    async def reserve(self, day: str, client: str, tokens: int, budgets: tuple[int, int]) -> int:
        args = [tokens, *budgets, KEY_TTL_SECONDS]
        verdict = await self.store.run(
            lambda: self._reserve(keys=self._keys(day, client), args=args)
        )
        return int(verdict)

    async def settle(self, day: str, client: str, reserved: int, used: int) -> Totals:
        args = [reserved, used, KEY_TTL_SECONDS]
        totals = await self.store.run(lambda: self._settle(keys=self._keys(day, client), args=args))
        return _as_totals(totals)

    async def totals(self, day: str, client: str) -> Totals:
        async def read() -> list[list[bytes | None]]:
            async with self.store.client.pipeline(transaction=False) as pipe:
                for key in self._keys(day, client):
                    pipe.hmget(key, "spent", "reserved")
                result: list[list[bytes | None]] = await pipe.execute()
                return result

        rows = await self.store.run(read)
        return _as_totals([value for row in rows for value in row])


def _as_totals(values: list[bytes | int | None]) -> Totals:
    spent, reserved, client_spent, client_reserved = (int(v or 0) for v in values)
    return spent, reserved, client_spent, client_reserved


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TokenBudget:
    """The service's and each client's daily budget, on `app.state.budget`."""

    def __init__(
        self, settings: Settings, ledger: Ledger, now: Callable[[], datetime] = _utc_now
    ) -> None:
        self.budgets = (settings.token_budget_per_day, settings.client_token_budget_per_day)
        self.fail_open = settings.budget_fail_open
        self.ledger = ledger
        self.now = now

    def _day(self) -> tuple[str, int]:
        """Today's UTC date, and the seconds until the next UTC midnight (at least 1)."""
        now = self.now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        return now.date().isoformat(), max(1, math.ceil((midnight - now).total_seconds()))

    async def reserve(self, client: str, tokens: int) -> Reservation:
        """Hold `tokens` for one call; 429 budget_exhausted, or 503 when it cannot be checked."""
        day, resets_in = self._day()
        try:
            verdict = await self.ledger.reserve(day, client, tokens, self.budgets)
        except StoreUnavailable:
            if self.fail_open or not any(self.budgets):
                return Reservation(client, tokens, day, counted=False)
            raise _unavailable() from None
        if verdict:
            whose = "the service's" if verdict == 1 else "this client's"
            message = f"{whose} daily token budget is used up; it renews at 00:00 UTC"
            raise ApiError(429, "budget_exhausted", message, {"Retry-After": str(resets_in)})
        return Reservation(client, tokens, day)

    async def settle(self, reservation: Reservation, used_tokens: int | None) -> Report | None:
        """Charge what the call used (None: usage never came, the reservation stands).

        Shielded: it runs after a client disconnect too, when the request is being cancelled.
        None when nothing was counted or the ledger did not answer (the reservation then stays).
        """
        if not reservation.counted:
            return None
        used = reservation.tokens if used_tokens is None else used_tokens
        with anyio.CancelScope(shield=True):
            try:
                totals = await self.ledger.settle(
                    reservation.day, reservation.client, reservation.tokens, used
                )
            except StoreUnavailable:
                return None
        return self._report(reservation.day, totals)

    async def report(self, client: str) -> Report:
        """Today's spend of `client` and of the service (GET /v1/budget)."""
        day, _ = self._day()
        try:
            totals = await self.ledger.totals(day, client)
        except StoreUnavailable:
            raise _unavailable() from None
        return self._report(day, totals)

    def _report(self, day: str, totals: Totals) -> Report:
        service_budget, client_budget = self.budgets
        return Report(
            day=day,
            resets_in_seconds=self._day()[1],
            service=Spend(totals[0], totals[1], service_budget),
            client=Spend(totals[2], totals[3], client_budget),
        )


def usage_fields(
    reservation: Reservation, used: int | None, report: Report | None
) -> dict[str, Any]:
    """The budget's part of the usage log line: what this call was charged, what is left today."""
    fields: dict[str, Any] = {
        "client": reservation.client,
        "tokens_reserved": reservation.tokens,
        "tokens_charged": reservation.tokens if used is None else used,
    }
    if report is not None:
        fields |= {
            "client_tokens_spent": report.client.spent,
            "client_tokens_remaining": report.client.remaining,
            "service_tokens_spent": report.service.spent,
            "service_tokens_remaining": report.service.remaining,
        }
    return fields


def _unavailable() -> ApiError:
    message = "the token budget cannot be checked right now; retry shortly"
    return ApiError(503, "budget_unavailable", message, {"Retry-After": "1"})


def build_budget(settings: Settings, store: SharedStore | None) -> TokenBudget:
    ledger: Ledger = MemoryLedger() if store is None else RedisLedger(store)
    return TokenBudget(settings, ledger)
