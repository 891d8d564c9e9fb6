"""The wallet: coin spends, purchases, grants, chargebacks, diamonds and redemption.

Every change to a balance is one Lua script on the wallet's shard (server/storage/lua/): it checks,
changes the wallet, records the operation's id with its result (idempotency) and appends the
ledger entry to the shard's stream, atomically. Nothing here reads a balance and then writes it.
A gift's diamonds are credited by `credit.lua` on the creator's shard (another slot) right after
the spend (in the background, batched per creator, once `start()`ed), and again, idempotently, by
the flusher for every gift it writes to Postgres: so a crash between the two is always completed
(docs/ledger.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.errors import ErrorCode
from protocol.limits import IDENTIFIER_PATTERN, MAX_GIFT_COUNT, MAX_SAFE_INT, MAX_TX_ID_LEN
from server.money import ledger, streams
from server.money.blockgate import BlockGate
from server.money.catalog import Catalog, load_catalog
from server.money.credits import MAX_CREDITS_PER_CALL, Credit
from server.runtime import Runtime
from server.storage.scripts import ScriptRunner

log = logging.getLogger("giftwire.wallet")

# Gift and credit records live this long: far beyond any client retry, and `rebuild` restores
# those still inside the window from Postgres. Deposit, reversal and redemption records are kept.
TX_TTL_S = 7 * 24 * 3600
# Credits waiting for the background batcher; beyond this a spend pays its credit itself.
MAX_QUEUED_CREDITS = 10_000
# The scripts (server/storage/lua/<name>.lua) this module calls; tests check each stays in one slot.
WALLET_SCRIPTS = frozenset({"spend", "credit", "credited", "deposit", "reverse", "redeem",
                            "combo_close", "blocks_load", "wallet_state"})
# A combo's record (its room, gift and deadline) outlives its settlement by this much, so a late
# click is refused instead of starting the same combo id afresh.
COMBO_MEMORY_S = 3600
_ID = re.compile(IDENTIFIER_PATTERN)
assert IDENTIFIER_PATTERN.endswith("+")
_SPEND_IDS = re.compile(rf"(?:{IDENTIFIER_PATTERN[:-1]}{{1,{MAX_TX_ID_LEN}}} ){{3}}"
                        rf"{IDENTIFIER_PATTERN[:-1]}{{1,{MAX_TX_ID_LEN}}}")


@dataclass(frozen=True, slots=True)
class SpendRequest:
    user: str
    room: str
    gift: str
    count: int
    tx: str
    combo: str | None = None


@dataclass(frozen=True, slots=True)
class SpendResult:
    ok: bool  # accepted (also True for a duplicate of an accepted tx)
    balance: int  # the viewer's coin balance after (or current, when refused)
    duplicate: bool  # this tx id was already processed; this is the first result
    code: str | None  # ErrorCode value when refused
    coins: int = 0  # total coin value of the gift(s)
    creator: str | None = None
    gift_name: str = ""
    streakable: bool = False
    # When the debit's ledger entry was written (Redis time, ms; the ledger's `ts`), also for a
    # duplicate (its tx record keeps it); 0 only for a record written before it was kept.
    # Battles score a gift by it.
    at_ms: int = 0


@dataclass(frozen=True, slots=True)
class OpResult:
    """Outcome of a deposit, reversal or redemption."""

    ok: bool
    duplicate: bool
    code: str | None
    balance: int  # coins (deposit, reverse) or diamonds (redeem)
    tx_key: str = ""  # the ledger transaction key
    taken: int = 0  # reverse: coins taken back
    shortfall: int = 0  # reverse: coins the wallet could not cover (it is frozen)


@dataclass(frozen=True, slots=True)
class WalletState:
    user: str
    coins: int
    diamonds: int
    carry: int
    frozen: bool
    daily_limit: int  # the viewer's own (0: none)


def valid_ident(value: str, max_len: int = MAX_TX_ID_LEN) -> bool:
    return 0 < len(value) <= max_len and _ID.fullmatch(value) is not None


def _int(value: Any) -> int:
    return int(value) if value not in (None, b"", "") else 0


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Wallet:
    def __init__(self, rt: Runtime, runner: ScriptRunner, catalog: Catalog | None = None) -> None:
        self._rt = rt
        self._runner = runner
        self._keys = rt.keys
        self.catalog = catalog if catalog is not None else load_catalog()
        self.blocks = BlockGate(rt, runner)
        self._credits: list[Credit] = []
        self._credit_wakeup = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._credit_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._counters: dict[str, Any] = {}  # outcome -> its labelled counter

    # -- spending ---------------------------------------------------------------------------
    async def spend(self, req: SpendRequest) -> SpendResult:
        gift = self.catalog.gifts.get(req.gift)
        name, streakable = (gift.name, gift.streakable) if gift else ("", False)
        code = self._check_spend(req)
        if code is not None:
            self._count(code)
            return SpendResult(False, await self.balance(req.user), False, code,
                               gift_name=name, streakable=streakable)
        k, shard = self._keys, self._keys.shard_of(req.user)
        keys = [k.wallet(req.user), k.tx(req.user, req.tx), k.ledger_stream(shard),
                k.catalog(shard), k.live_rooms(shard), k.blocks(shard),
                k.balance_channel(req.user)]
        args: list[str | int] = [req.user, req.tx, req.room, req.gift, req.count, req.combo or "",
                                 self._rt.config.daily_spend_limit, TX_TTL_S]
        if req.combo:
            keys.append(k.combo(req.user, req.combo))
            args += [self._rt.config.combo_timeout_ms, COMBO_MEMORY_S]
        for attempt in range(2):
            raw, balance, coins, creator, *entry = await self._runner.call("spend", keys, args)
            status = _str(raw)  # decoded once: the spend path's hot line
            if status != "blocks_unloaded":
                break
            if attempt:  # lost again at once: Redis is failing
                raise ConnectionError("the spend gate's blocks cannot be loaded now")
            await self.blocks.load()  # the shard's blocks were lost: reload, then spend again
        creator = _str(creator) or None
        if status == "room_not_live":
            info = await streams.room_info(self._rt, req.room)
            status = ErrorCode.ROOM_ENDED.value if info else ErrorCode.ROOM_NOT_FOUND.value
        self._count(status)
        if status not in ("ok", "dup"):
            return SpendResult(False, int(balance), False, status, creator=creator,
                               gift_name=name, streakable=streakable)
        if status == "ok" and creator:
            await self._credit_after_spend(
                Credit(creator, req.user, req.tx, int(coins), req.room, req.gift, req.count))
        return SpendResult(True, int(balance), status == "dup", None, int(coins), creator,
                           name, streakable, ledger.entry_ms(_str(entry[0])) if entry else 0)

    async def close_combo(self, user: str, combo: str) -> bool:
        """No click of this combo is charged from now on (`combo_end`, before the room settles
        it); False when the combo has no charged click."""
        return bool(await self._runner.call("combo_close", [self._keys.combo(user, combo)], []))

    def _check_spend(self, req: SpendRequest) -> str | None:
        if type(req.count) is not int or not 1 <= req.count <= MAX_GIFT_COUNT:
            return ErrorCode.OUT_OF_RANGE.value
        tx, room, gift, combo = req.tx, req.room, req.gift, req.combo or "x"
        # One regex over the four ids (their alphabet has no space): the hot path's check.
        if (not req.user or type(tx) is not str or type(room) is not str
                or type(gift) is not str or type(combo) is not str
                or _SPEND_IDS.fullmatch(f"{tx} {room} {gift} {combo}") is None):
            return ErrorCode.INVALID_VALUE.value
        return None

    def _count(self, outcome: str) -> None:
        counter = self._counters.get(outcome)
        if counter is None:
            counter = self._counters[outcome] = self._rt.metrics.spends.labels(outcome=outcome)
        counter.inc()

    async def credit(self, creator: str, viewer: str, tx: str, coins: int, room: str, gift: str,
                     count: int) -> int:
        """Credit the creator's diamonds for one accepted gift (idempotent); returns diamonds."""
        return await self.credit_many(creator, [Credit(creator, viewer, tx, coins, room, gift,
                                                       count)])

    async def credit_many(self, creator: str, credits: Sequence[Credit]) -> int:
        """Credit several gifts to one creator in one script call; returns diamonds added now
        (gifts credited before add nothing)."""
        credited, _balance = await self._submit_credits(creator, credits)
        return int(credited)

    def _submit_credits(self, creator: str, credits: Sequence[Credit]) -> asyncio.Future[Any]:
        k, shard, cfg = self._keys, self._keys.shard_of(creator), self._rt.config
        keys = [k.wallet(creator), k.ledger_stream(shard), k.wallets_index(shard),
                k.balance_channel(creator)]
        args: list[str | int] = [creator, cfg.diamonds_per_coin_num, cfg.diamonds_per_coin_den,
                                 TX_TTL_S]
        for c in credits:
            keys.append(k.tx(creator, f"c:{c.viewer}:{c.tx}"))
            args += [c.viewer, c.tx, c.coins, c.room, c.gift, c.count]
        return self._runner.submit("credit", keys, args)

    async def uncredited(self, creator: str, credits: Sequence[Credit]) -> list[Credit]:
        """Those of the creator's gifts that have no credit yet (one read-only call)."""
        k = self._keys
        keys = [k.tx(creator, f"c:{c.viewer}:{c.tx}") for c in credits]
        done = await self._runner.call("credited", keys, [])
        return [c for c, d in zip(credits, done, strict=True) if not d]

    # -- credits right after spends, batched per creator ------------------------------------
    def start(self) -> None:
        """Credit creators in the background, batched per creator (without it, every spend
        awaits its own credit call: correct, but half the spend rate)."""
        if self._credit_task is None:
            self._credit_task = asyncio.create_task(self._credit_loop(), name="wallet-credits")

    async def stop(self) -> None:
        task, self._credit_task = self._credit_task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settle_credits(), timeout=5)
            self._stopping = True  # in case a client library swallows the cancellation
            self._credit_wakeup.set()
            task.cancel()
            await asyncio.wait([task], timeout=5)

    async def settle_credits(self) -> None:
        """Until every credit queued so far has been applied (or failed to the flusher)."""
        await self._settled.wait()

    async def _credit_after_spend(self, credit: Credit) -> None:
        if self._credit_task is not None and len(self._credits) < MAX_QUEUED_CREDITS:
            self._credits.append(credit)
            self._settled.clear()
            self._credit_wakeup.set()
            return
        await self._apply_credits([credit])  # not started, or backlogged: pay it now

    async def _credit_loop(self) -> None:
        while not self._stopping:
            await self._credit_wakeup.wait()
            self._credit_wakeup.clear()
            while self._credits:
                batch, self._credits = self._credits, []
                await self._apply_credits(batch)
            self._settled.set()

    async def _apply_credits(self, batch: Sequence[Credit]) -> None:
        by_creator: dict[str, list[Credit]] = {}
        for c in batch:
            by_creator.setdefault(c.creator, []).append(c)
        # Futures, not coroutines: gather would wrap each coroutine in a task (one per creator
        # per round, about one per gift at the spend peak).
        calls: list[asyncio.Future[Any]] = []
        try:
            for creator, items in by_creator.items():
                for i in range(0, len(items), MAX_CREDITS_PER_CALL):
                    calls.append(self._submit_credits(creator, items[i : i + MAX_CREDITS_PER_CALL]))
        except ConnectionError as exc:  # the runner is overloaded: the rest waits for the flusher
            log.warning("credits deferred to the flusher: %s", exc)
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, Exception):
                # The spends are accepted already; the flusher credits every gift it writes.
                log.warning("credits deferred to the flusher: %s", result)

    # -- reading ----------------------------------------------------------------------------
    async def balance(self, user: str) -> int:
        return _int(await self._rt.redis.hget(self._keys.wallet(user), "coins"))

    async def state(self, user: str) -> WalletState:
        return self.state_from(user, await self.state_lookup(user))

    def state_lookup(self, user: str) -> Awaitable[Any]:
        """The wallet's hash read as a script call, batched with the other calls of this
        event-loop iteration on the runner's own connection (no pooled connection, no redis-py
        per read: a burst of balance reads costs one write per iteration); `state_from` reads
        its result."""
        return self._runner.submit("wallet_state", [self._keys.wallet(user)], [])

    @property
    def scripts(self) -> ScriptRunner:
        """The script runner (callers batching a lookup of their own with `state_lookup`)."""
        return self._runner

    @staticmethod
    def state_from(user: str, reply: Any) -> WalletState:
        coins, diamonds, carry, frozen, limit = reply
        return WalletState(user, _int(coins), _int(diamonds), _int(carry), frozen == b"1",
                           _int(limit))

    async def set_daily_limit(self, user: str, coins: int) -> None:
        """The viewer's own daily spending limit (0: only the platform's). Postgres first, so
        `rebuild` restores it; the spend script reads it from the wallet hash."""
        await self._rt.pool.execute(
            """INSERT INTO wallet_settings (user_id, daily_limit) VALUES ($1, $2)
               ON CONFLICT (user_id) DO UPDATE SET daily_limit = $2, updated_at = now()""",
            user, coins,
        )
        k = self._keys
        async with self._rt.redis.pipeline(transaction=False) as pipe:
            pipe.hset(k.wallet(user), "daily_limit", coins)
            pipe.sadd(k.wallets_index(k.shard_of(user)), user)
            await pipe.execute()

    async def unfreeze(self, user: str) -> None:
        """An administrator settled a chargeback's shortfall: the wallet may spend again."""
        await self._rt.pool.execute(
            """INSERT INTO wallet_settings (user_id, unfrozen_at) VALUES ($1, now())
               ON CONFLICT (user_id) DO UPDATE SET unfrozen_at = now(), updated_at = now()""",
            user,
        )
        await self._rt.redis.hdel(self._keys.wallet(user), "frozen")

    # -- money in ---------------------------------------------------------------------------
    async def purchase(self, user: str, package: str, receipt_id: str) -> OpResult:
        pkg = self.catalog.packages.get(package)
        if pkg is None:
            return OpResult(False, False, ErrorCode.INVALID_VALUE.value, await self.balance(user))
        return await self._deposit(user, "purchase", receipt_id, pkg.coins, pkg.id,
                                   pkg.price_cents, pkg.currency)

    async def grant(self, user: str, coins: int, grant_id: str, admin: str) -> OpResult:
        if type(coins) is not int or not 1 <= coins <= MAX_SAFE_INT // 1024:
            return OpResult(False, False, ErrorCode.OUT_OF_RANGE.value, await self.balance(user))
        return await self._deposit(user, "grant", grant_id, coins, admin, 0, "")

    async def _deposit(self, user: str, kind: str, ref: str, coins: int, counterparty: str,
                       price_cents: int, currency: str) -> OpResult:
        if not valid_ident(ref) or not user:
            return OpResult(False, False, ErrorCode.INVALID_VALUE.value, await self.balance(user))
        k, shard = self._keys, self._keys.shard_of(user)
        tag = "p" if kind == "purchase" else "a"
        status, balance = await self._runner.call(
            "deposit",
            [k.wallet(user), k.tx(user, f"{tag}:{ref}"), k.ledger_stream(shard),
             k.wallets_index(shard), k.balance_channel(user)],
            [user, kind, ref, coins, counterparty, price_cents, currency],
        )
        return _op(_str(status), int(balance), ledger.tx_key(kind, user, ref))

    # -- chargebacks ------------------------------------------------------------------------
    async def reverse(self, original_key: str, admin: str) -> OpResult:
        """Take back the coins of a purchase or grant (by ledger key) from the ledger."""
        original = await ledger.find_tx(self._rt.pool, original_key)
        if original is None or original.kind not in ("purchase", "grant"):
            return OpResult(False, False, "not_found", 0)
        user, k = original.user, self._keys
        shard = k.shard_of(user)
        status, balance, taken, short = await self._runner.call(
            "reverse",
            [k.wallet(user), k.tx(user, f"r:{original_key}"), k.ledger_stream(shard),
             k.wallets_index(shard), k.balance_channel(user)],
            [user, original_key, original.coins, admin],
        )
        res = _op(_str(status), int(balance), ledger.tx_key("reverse", user, original_key))
        return OpResult(res.ok, res.duplicate, res.code, res.balance, res.tx_key, int(taken),
                        int(short))

    # -- diamonds out -----------------------------------------------------------------------
    async def redeem(self, user: str, diamonds: int, request_id: str) -> OpResult:
        state = None
        if type(diamonds) is not int or not 1 <= diamonds <= MAX_SAFE_INT:
            state = ErrorCode.OUT_OF_RANGE.value
        elif not valid_ident(request_id):
            state = ErrorCode.INVALID_VALUE.value
        if state is not None:
            return OpResult(False, False, state, (await self.state(user)).diamonds)
        k, shard = self._keys, self._keys.shard_of(user)
        status, balance = await self._runner.call(
            "redeem",
            [k.wallet(user), k.tx(user, f"d:{request_id}"), k.ledger_stream(shard),
             k.wallets_index(shard), k.balance_channel(user)],
            [user, request_id, diamonds, self._rt.config.redeem_min_diamonds],
        )
        return _op(_str(status), int(balance), ledger.tx_key("redeem", user, request_id))


def _op(status: str, balance: int, tx_key: str) -> OpResult:
    if status in ("ok", "dup"):
        return OpResult(True, status == "dup", None, balance, tx_key)
    return OpResult(False, False, status, balance, tx_key)
