"""The outbox: alerts are decided and written inside the transaction that stores the block
(`record_block`, called by `crud.write_snapshot`), so a block is stored with its alerts or not
at all; rule state moves in the same transaction, so a restart neither repeats nor forgets.
The delivery job reads pending rows from here (`due`), and records every attempt (`record`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, select, update

from onchain.alerts.config import AlertsConfig, DeliveryConfig, RuleConfig
from onchain.alerts.messages import alert_uid, hf_text, position_message
from onchain.alerts.rules import Observation, RuleState, in_danger, step
from onchain.model import Position
from onchain.rpc.client import BlockRef
from onchain.store import models as m
from onchain.store.crud import Assessed, MarketInfo, _insert, utcnow
from onchain.store.db import Store

T_OUTBOX = cast(Table, m.AlertOutbox.__table__)
T_DELIVERIES = cast(Table, m.AlertDelivery.__table__)
T_ATTEMPTS = cast(Table, m.AlertAttempt.__table__)
T_STATE = cast(Table, m.AlertRuleState.__table__)
DIGEST_LIMIT = 10  # positions named in a digest's text (the JSON lists them all)


@dataclass(frozen=True)
class BlockAlerts:
    """What `record_block` needs besides the connection: set up by the refresh."""

    config: AlertsConfig
    config_path: Path
    market: MarketInfo
    block: BlockRef
    positions: Sequence[Position]
    assessed: Sequence[Assessed]  # each with the risk module's verdict when it ran


def _state_key(rule: str, account: str, market_key: str) -> tuple[str, str, str]:
    return rule, account, market_key


def _load_states(
    conn: Connection, market_id: int, rules: Sequence[str]
) -> dict[tuple[str, str, str], RuleState]:
    rows = conn.execute(
        select(T_STATE).where((T_STATE.c.market_id == market_id) & T_STATE.c.rule.in_(rules))
    )
    return {
        _state_key(r.rule, r.account, r.market_key): RuleState(
            r.active, r.reported_tier, r.rearm_wad, r.last_fired_at, dict(r.observed or {})
        )
        for r in rows
    }


def _save_state(
    conn: Connection,
    market_id: int,
    key: tuple[str, str, str],
    state: RuleState,
    existed: bool,
    now: datetime,
) -> None:
    values = {
        "active": state.active,
        "reported_tier": state.reported_tier,
        "rearm_wad": state.rearm_wad,
        "last_fired_at": state.last_fired_at,
        "observed": state.observed,
        "updated_at": now,
    }
    rule, account, market_key = key
    if existed:
        conn.execute(
            update(T_STATE)
            .where(
                (T_STATE.c.rule == rule)
                & (T_STATE.c.market_id == market_id)
                & (T_STATE.c.account == account)
                & (T_STATE.c.market_key == market_key)
            )
            .values(**values)
        )
    else:
        conn.execute(
            T_STATE.insert().values(
                rule=rule, market_id=market_id, account=account, market_key=market_key, **values
            )
        )


def _significant(state: RuleState) -> tuple[Any, ...]:
    """What must be saved: the observed amounts only matter during an episode."""
    return (
        state.active,
        state.reported_tier,
        state.rearm_wad,
        state.last_fired_at,
        state.observed if state.active else None,
    )


def enqueue(
    conn: Connection,
    cfg: AlertsConfig,
    rule: RuleConfig,
    body: dict[str, Any],
    *,
    market_id: int | None,
    market_key: str | None,
    health_factor: int | None,
    now: datetime,
) -> bool:
    """One alert into the outbox with a pending delivery per channel; False if its id is
    already there (the same alert is never queued twice)."""
    inserted = conn.execute(
        _insert(conn, T_OUTBOX)
        .values(
            uid=body["id"],
            rule=rule.name,
            kind=body["kind"],
            chain_id=body["chain_id"],
            market_id=market_id,
            account=body.get("account"),
            market_key=market_key,
            block_number=body["block_number"],
            block_hash=body["block_hash"],
            tier=body.get("tier"),
            previous_tier=body.get("previous_tier"),
            health_factor=health_factor,
            text=body["text"],
            payload=body,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["uid"])
        .returning(T_OUTBOX.c.id)
    ).scalar()
    if inserted is None:
        return False
    conn.execute(
        T_DELIVERIES.insert(),
        [
            {
                "outbox_id": inserted,
                "channel": name,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": None,
                "delivered_at": None,
            }
            for name in cfg.rule_channels(rule)
        ],
    )
    return True


def see_more(cfg: AlertsConfig, path: Path, account: str | None, market: str) -> str:
    if account is None:
        return f"{cfg.command} report --config {path}"
    return f"{cfg.command} history {account} --market {market} --config {path}"


def record_block(conn: Connection, b: BlockAlerts) -> int:
    """Run every rule over the block's positions; write the alerts they fire and their new
    state. In the caller's transaction. Returns the number of alerts queued."""
    cfg, market = b.config, b.market
    rules = [r for r in cfg.rules if r.markets is None or market.name in r.markets]
    if not rules:
        return 0
    now = utcnow()
    states = _load_states(conn, market.id, [r.name for r in rules])
    queued = 0
    for rule in rules:
        for p, a in zip(b.positions, b.assessed, strict=True):
            if not rule.watches(market.name, p.account):
                continue
            key = _state_key(rule.name, p.account, p.market)
            old = states.get(key)
            o = Observation.of(p, a.tier)
            if old is None and not in_danger(rule, o):
                continue  # nothing to remember about a quiet position
            kind, new = step(rule, old or RuleState(), o, now)
            if old is None or _significant(new) != _significant(old):
                _save_state(conn, market.id, key, new, old is not None, now)
            if kind is None:
                continue
            previous = (old.reported_tier if old and old.active else None) or "SAFE"
            uid = alert_uid(
                market.chain_id,
                market.id,
                p.account,
                p.market,
                rule.name,
                kind,
                b.block.number,
                b.block.hash,
            )
            body, _text = position_message(
                uid=uid,
                kind=kind,
                rule=rule.name,
                market_name=market.name,
                chain_id=market.chain_id,
                position=p,
                tier=a.tier,
                previous_tier=previous,
                reason=a.reason,
                reasons=a.reasons,
                probability=a.probability,
                horizon_s=a.horizon_s,
                verdict=a.verdict,
                see_more=see_more(cfg, b.config_path, p.account, market.name),
                below_hf_wad=rule.below_hf_wad,
            )
            queued += enqueue(
                conn,
                cfg,
                rule,
                body,
                market_id=market.id,
                market_key=p.market,
                health_factor=p.health_factor,
                now=now,
            )
        if rule.digest_every_s:
            queued += _digest(conn, b, rule, states, now)
    return queued


def _digest(
    conn: Connection,
    b: BlockAlerts,
    rule: RuleConfig,
    states: dict[tuple[str, str, str], RuleState],
    now: datetime,
) -> int:
    """Every `digest_every_h`: the market's watched positions at the rule's level, worst first."""
    key = _state_key(rule.name, "", "")
    old = states.get(key)
    last = None if old is None else old.last_fired_at
    if last is not None and (now - last).total_seconds() < rule.digest_every_s:
        return 0
    market = b.market
    rows = []
    for p, a in zip(b.positions, b.assessed, strict=True):
        o = Observation.of(p, a.tier)
        if rule.watches(market.name, p.account) and in_danger(rule, o):
            rows.append((p, a))
    rows.sort(key=lambda r: (r[0].health_factor is None, r[0].health_factor or 0))
    debt = sum(p.total_debt_base for p, _ in rows)
    decimals = rows[0][0].base_currency_decimals if rows else 0
    lines = [
        f"DIGEST {market.name}: {len(rows)} position(s) at risk under rule {rule.name}, "
        f"debt {debt / 10**decimals:,.2f} (base currency)"
    ]
    for p, a in rows[:DIGEST_LIMIT]:
        lines.append(f"{a.tier} {p.account} HF {hf_text(p.health_factor)}")
    path = see_more(b.config, b.config_path, None, market.name)
    lines.append(f"Block {b.block.number}. See: {path}")
    text = "\n".join(lines)
    uid = alert_uid(market.chain_id, market.id, rule.name, "digest", b.block.number, b.block.hash)
    body = {
        "id": uid,
        "kind": "digest",
        "rule": rule.name,
        "account": None,
        "protocol": market.protocol,
        "market": market.name,
        "chain_id": market.chain_id,
        "block_number": b.block.number,
        "block_hash": b.block.hash,
        "block_timestamp": b.block.timestamp,
        "tier": rule.from_tier,
        "previous_tier": None,
        "health_factor": None,
        "positions": [
            {
                "account": p.account,
                "market_key": p.market,
                "tier": a.tier,
                "health_factor": None if p.health_factor is None else str(p.health_factor),
                "liquidation_probability": a.probability,
                "total_debt_base": str(p.total_debt_base),
            }
            for p, a in rows
        ],
        "total_debt_base": str(debt),
        "see_more": path,
        "text": text,
    }
    _save_state(conn, market.id, key, RuleState(False, None, None, now, {}), old is not None, now)
    return int(
        enqueue(
            conn,
            b.config,
            rule,
            body,
            market_id=market.id,
            market_key=None,
            health_factor=None,
            now=now,
        )
    )


# -- the delivery side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    outbox_id: int
    channel: str
    attempts: int
    uid: str
    payload: dict[str, Any]
    text: str


def due(store: Store, channels: Sequence[str], limit: int = 50) -> list[Due]:
    """Pending deliveries whose time has come, oldest alert first, for these channels."""
    d, o = T_DELIVERIES, T_OUTBOX
    with store.read() as conn:
        rows = conn.execute(
            select(d.c.outbox_id, d.c.channel, d.c.attempts, o.c.uid, o.c.payload, o.c.text)
            .join(o, o.c.id == d.c.outbox_id)
            .where(
                (d.c.state == "pending")
                & (d.c.next_attempt_at <= utcnow())
                & d.c.channel.in_(list(channels))
            )
            .order_by(d.c.outbox_id, d.c.channel)
            .limit(limit)
        ).all()
    return [Due(*r) for r in rows]


def backoff_s(delivery: DeliveryConfig, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failure: doubling from the base, capped."""
    return min(delivery.retry_max_s, delivery.retry_base_s * math.pow(2, max(0, attempts - 1)))


def record(
    store: Store,
    delivery: DeliveryConfig,
    item: Due,
    *,
    ok: bool,
    status: int | None,
    error: str | None,
    duration_ms: int,
) -> str:
    """The attempt and the delivery's new state (delivered, pending with a later retry, or
    failed once the attempts run out), in one transaction. Returns the new state."""
    now = utcnow()
    attempts = item.attempts + 1
    values: dict[str, Any]
    if ok:
        state, values = "delivered", {"delivered_at": now, "last_error": None}
    elif attempts >= delivery.max_attempts:
        state, values = "failed", {"last_error": error}
    else:
        wait = timedelta(seconds=backoff_s(delivery, attempts))
        state, values = "pending", {"last_error": error, "next_attempt_at": now + wait}
    with store.write() as conn:
        conn.execute(
            T_ATTEMPTS.insert().values(
                outbox_id=item.outbox_id,
                channel=item.channel,
                attempted_at=now,
                ok=ok,
                status=status,
                error=error,
                duration_ms=duration_ms,
            )
        )
        conn.execute(
            update(T_DELIVERIES)
            .where(
                and_(
                    T_DELIVERIES.c.outbox_id == item.outbox_id,
                    T_DELIVERIES.c.channel == item.channel,
                )
            )
            .values(state=state, attempts=attempts, **values)
        )
    return state


def recent(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The newest alerts with each channel's delivery state, newest first."""
    o, d = T_OUTBOX, T_DELIVERIES
    with store.read() as conn:
        alerts = conn.execute(select(o).order_by(o.c.id.desc()).limit(limit)).all()
        ids = [a.id for a in alerts]
        deliveries = conn.execute(
            select(d).where(d.c.outbox_id.in_(ids)).order_by(d.c.channel)
        ).all()
    by_alert: dict[int, list[dict[str, Any]]] = {}
    for r in deliveries:
        by_alert.setdefault(r.outbox_id, []).append(
            {
                "channel": r.channel,
                "state": r.state,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "delivered_at": None if r.delivered_at is None else r.delivered_at.isoformat(),
                "next_attempt_at": r.next_attempt_at.isoformat() if r.state == "pending" else None,
            }
        )
    return [
        {
            "id": a.uid,
            "kind": a.kind,
            "rule": a.rule,
            "account": a.account,
            "tier": a.tier,
            "previous_tier": a.previous_tier,
            "health_factor": None if a.health_factor is None else str(a.health_factor),
            "market": a.payload.get("market"),
            "chain_id": a.chain_id,
            "block_number": a.block_number,
            "created_at": a.created_at.isoformat(),
            "text": a.text,
            "deliveries": by_alert.get(a.id, []),
        }
        for a in alerts
    ]


@dataclass(frozen=True)
class RulesWatch:
    """Which positions of a block the rules need whole (`Observation.of` reads a position's
    raw amounts): those in an episode under some rule, and those in danger under a rule that
    watches them. `record_block` does nothing for any other position: without a state it skips
    a quiet position, and a quiet one's state (not in an episode) saves nothing new, as
    `_significant` ignores what it observed then; so a block's rules may be run on these
    positions alone and decide what they decide on the whole book."""

    rules: tuple[RuleConfig, ...]
    market: str
    episodes: frozenset[tuple[str, str]]  # (account, market key) in an episode under a rule

    def wants(
        self,
        account: str,
        market_key: str,
        health_factor: int | None,
        liquidatable: bool,
        tier: str,
    ) -> bool:
        if (account, market_key) in self.episodes:
            return True
        seen = Observation(health_factor, liquidatable, tier, {}, {})  # in_danger reads no amounts
        return any(r.watches(self.market, account) and in_danger(r, seen) for r in self.rules)


def rules_watch(ctx: Any, market: MarketInfo) -> RulesWatch | None:
    """The market's `RulesWatch` (None where no rule is set): the episodes as stored now."""
    cfg: AlertsConfig = ctx.config.alerts
    if not cfg.enabled:
        return None
    rules = tuple(r for r in cfg.rules if r.markets is None or market.name in r.markets)
    if not rules:
        return RulesWatch((), market.name, frozenset())
    store: Store = ctx.store
    with store.read() as conn:
        active = conn.execute(
            select(T_STATE.c.account, T_STATE.c.market_key).where(
                (T_STATE.c.market_id == market.id)
                & T_STATE.c.rule.in_([r.name for r in rules])
                & T_STATE.c.active.is_(True)
            )
        ).all()
    return RulesWatch(rules, market.name, frozenset((a, k) for a, k in active))


def block_alerts(
    ctx: Any,
    market: MarketInfo,
    block: BlockRef,
    positions: Sequence[Position],
    assessed: Sequence[Assessed],
    counts: Any,
) -> Callable[[Connection], None] | None:
    """The refresh's hook into `write_snapshot`'s transaction; None where no rule is set."""
    cfg: AlertsConfig = ctx.config.alerts
    if not cfg.enabled:
        return None
    b = BlockAlerts(cfg, ctx.config.path, market, block, positions, assessed)

    def hook(conn: Connection) -> None:
        queued = record_block(conn, b)
        if queued:
            counts["alerts_queued"] += queued

    return hook
