"""Turn positions into the stable machine interface (JSON, CSV) and into human tables."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from rich.table import Table

from onchain.model import LiquidationHold
from onchain.protocols.base import AssetPosition, Position
from onchain.protocols.registry import DETAIL_COLUMNS

WAD = 10**18


def asset_json(asset: AssetPosition) -> dict[str, Any]:
    return {
        "asset": asset.asset,
        "symbol": asset.symbol,
        "decimals": asset.decimals,
        "price_base": str(asset.price_base),
        "collateral_raw": str(asset.collateral_raw),
        "debt_raw": str(asset.debt_raw),
        "collateral_base": str(asset.collateral_base),
        "debt_base": str(asset.debt_base),
        "collateral_enabled": asset.collateral_enabled,
        "liquidation_threshold_bps": asset.liquidation_threshold_bps,
        "liquidation_price_base": None
        if asset.liquidation_price_base is None
        else str(asset.liquidation_price_base),
    }


def _with_liquidation_price(row: dict[str, Any], decimals: int) -> dict[str, Any]:
    """`liquidation_price`: the exact flip price in the market's base currency (decimal string)."""
    raw = row["liquidation_price_base"]
    row["liquidation_price"] = None if raw is None else str(Decimal(int(raw)).scaleb(-decimals))
    return row


def position_json(position: Position) -> dict[str, Any]:
    """The documented JSON contract: integers as decimal strings, health factor as a wad."""
    return {
        "account": position.account,
        "protocol": position.protocol,
        "market": position.market,
        "block_number": position.block.number,
        "block_hash": position.block.hash,
        "block_timestamp": position.block.timestamp,
        "health_factor": None if position.health_factor is None else str(position.health_factor),
        "liquidatable": position.liquidatable,
        "liquidation_hold": (
            None if position.liquidation_hold is None else position.liquidation_hold.as_json()
        ),
        "total_collateral_base": str(position.total_collateral_base),
        "total_debt_base": str(position.total_debt_base),
        "available_borrows_base": str(position.available_borrows_base),
        "liquidation_threshold_bps": position.liquidation_threshold_bps,
        "ltv_bps": position.ltv_bps,
        "base_currency_decimals": position.base_currency_decimals,
        **{c.key: position.extra.get(c.key) for c in DETAIL_COLUMNS},
        "protocol_version": position.version,
        "assets": [
            _with_liquidation_price(asset_json(a), position.base_currency_decimals)
            for a in position.assets
        ],
        # protocol-specific figures the adapter publishes (integers as decimal strings), e.g.
        # Morpho's liquidation incentive factor, exact oracle liquidation price, bad debt
        "details": _json_safe(position.extra),
    }


def _json_safe(value: Any) -> Any:
    """Integers as decimal strings (JSON numbers lose precision past 2**53), recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v) for v in value]
    return str(value)


def positions_json(
    positions: Sequence[Position], risk: Sequence[dict[str, Any]] | None = None
) -> str:
    """`risk`: per position the risk fields (tier, reasons, probability...), same order."""
    rows = [position_json(p) for p in positions]
    if risk is not None:
        for row, fields in zip(rows, risk, strict=True):
            row.update(fields)
    return strict_json(rows)


def strict_json(value: Any) -> str:
    """What every `--json` prints: strict JSON (non-finite floats as null), indented."""
    return json.dumps(_no_nan(value), indent=1, allow_nan=False)


def _no_nan(value: Any) -> Any:
    """JSON has no NaN or Infinity: a float that is not finite is reported as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


CSV_FIELDS = [
    "account",
    "protocol",
    "market",
    "block_number",
    "block_hash",
    "health_factor",
    "liquidatable",
    "total_collateral_base",
    "total_debt_base",
    "available_borrows_base",
    "liquidation_threshold_bps",
    "ltv_bps",
    "base_currency_decimals",
    "tier",
    "liquidation_probability",
    "horizon_s",
    "chain",  # the config's names, when the command read a config (else empty)
    "market_name",
]


def positions_csv(
    positions: Sequence[Position], risk: Sequence[dict[str, Any]] | None = None
) -> str:
    """One row per position, the JSON's flat fields; booleans as true/false like the JSON, and
    the risk columns empty with --no-risk."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for i, p in enumerate(positions):
        row = position_json(p)
        if risk is not None:
            row.update(risk[i])
        row["health_factor"] = row["health_factor"] or ""
        row["liquidatable"] = "true" if row["liquidatable"] else "false"
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def health_text(health_factor: int | None) -> str:
    """Four decimals, truncated in integer math: 0.999995 must never print as 1.0000."""
    if health_factor is None:
        return "no debt"
    whole, rest = divmod(health_factor, WAD)
    return f"{whole}.{rest // 10**14:04d}"


def horizon_text(seconds: float) -> str:
    """A risk horizon as people say it: 42s, 30m, 1h, 1d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds / 60:.0f}m" if seconds >= 600 else f"{seconds:.0f}s"


NEAR_MOVE = 0.05  # a liquidation price closer than this move is flagged, whatever the tier


def move_text(move: float | None) -> str:
    """The price move to liquidation, red when it is within NEAR_MOVE, yellow within 3x."""
    if move is None:
        return ""
    text = f"{move * 100:+.2f}%"
    if abs(move) < NEAR_MOVE:
        return f"[bold red]{text}[/]"
    return f"[yellow]{text}[/]" if abs(move) < 3 * NEAR_MOVE else text


def money(value_base: int, decimals: int) -> str:
    return f"{value_base / 10**decimals:,.2f}"


def hold_text(hold: LiquidationHold) -> str:
    """Why the protocol refuses to liquidate now, as a status."""
    return f"HELD: {hold.describe()}"


def status_text(position: Position) -> str:
    """LIQUIDATABLE, HELD (below the threshold, but the protocol refuses now), no debt or ok."""
    if position.liquidatable:
        return "LIQUIDATABLE"
    if position.liquidation_hold is not None:
        return hold_text(position.liquidation_hold)
    return "no debt" if not position.has_debt else "ok"


def health_style(position: Position) -> str:
    if position.liquidatable:
        return "bold red"
    hf = (position.health_factor or 10 * WAD) / WAD
    return "yellow" if hf < 1.1 else ("cyan" if hf < 1.5 else "green")


def market_text(position: Position) -> str:
    """The market as people read it: the adapter's label (e.g. "WETH/USDC 86%") or a short id."""
    label = position.market_label
    short = f"{position.market[:10]}…"
    return f"{label} {short}" if label else short


def _never_cut(address: bool) -> dict[str, Any]:
    """Column settings so a narrow terminal folds cells onto more lines instead of cutting them
    with an ellipsis: an address keeps its full width (42 characters) on one line."""
    if address:
        return {"no_wrap": True, "min_width": 42}
    return {"overflow": "fold"}


def positions_table(
    positions: Sequence[Position],
    title: str,
    risk: Sequence[dict[str, Any]] | None = None,
    chains: Sequence[str] | None = None,
    market_names: Sequence[str] | None = None,
) -> Table:
    """`chains`, `market_names`: per row, the config's chain and market names (several chains
    or markets in one table)."""
    table = Table(title=title, title_justify="left")
    # e.g. every market of a deployment: say which market each row is in
    several = (
        market_names is not None
        or len({p.market for p in positions}) > 1
        or any(p.market_label for p in positions)
    )
    if chains is not None:
        table.add_column("chain", justify="left")
    if several:
        table.add_column("market", justify="left")
    for name, justify in [
        ("account", "left"),
        ("health", "right"),
        ("collateral", "right"),
        ("debt", "right"),
        ("LT", "right"),
        *[(c.header, "right") for c in DETAIL_COLUMNS],
        *([(f"P(liq.) in {horizon_text(risk[0]['horizon_s'])}", "right")] if risk else []),
        ("status", "left"),
    ]:
        table.add_column(name, justify=justify, **_never_cut(name == "account"))  # type: ignore[arg-type]
    for i, p in enumerate(positions):
        unit = f" {p.base_currency}" if p.base_currency else ""
        status = status_text(p)
        extra_cells = []
        if risk is not None:
            extra_cells = [probability_text(risk[i]["liquidation_probability"])]
            status = tier_text(p, risk[i])
        market = market_text(p)
        if market_names is not None:
            label = p.extra.get("market_label")  # one market of a deployment: its label too
            market = f"{market_names[i]} {label}" if label else market_names[i]
        table.add_row(
            *([chains[i]] if chains is not None else []),
            *([market] if several else []),
            p.account,
            f"[{health_style(p)}]{health_text(p.health_factor)}[/]",
            money(p.total_collateral_base, p.base_currency_decimals) + unit,
            money(p.total_debt_base, p.base_currency_decimals) + unit,
            f"{p.liquidation_threshold_bps / 100:.2f}%",
            *[str(p.extra.get(c.key) or "") for c in DETAIL_COLUMNS],
            *extra_cells,
            status,
        )
    return table


def probability_text(p: float) -> str:
    return "<0.01%" if p < 1e-4 else f"{p:.2%}"


def verdict_tier(position: Position, fields: dict[str, Any]) -> str:
    """The exact verdict first: a float screen never overrides the contract's math."""
    tier = "LIQUIDATABLE" if position.liquidatable else str(fields["tier"])
    return "CRITICAL" if tier == "LIQUIDATABLE" and not position.liquidatable else tier


def tier_text(position: Position, fields: dict[str, Any]) -> str:
    """The tier as printed (`verdict_tier`), coloured, with its first reasons."""
    tier = verdict_tier(position, fields)
    style = {
        "LIQUIDATABLE": "bold red",
        "PENDING": "red",
        "CRITICAL": "red",
        "HIGH": "yellow",
        "WATCH": "cyan",
    }
    reasons = ",".join(fields["reasons"][:2])
    text = f"[{style.get(tier, 'green')}]{tier}[/]"
    return f"{text} {reasons}" if reasons and tier != "SAFE" else text


def breakdown_table(position: Position) -> Table:
    """Per asset: amounts, price and how far that collateral's price may fall before liquidation."""
    title = (
        f"{position.account}  {position.protocol} {market_text(position)}  "
        f"health [{health_style(position)}]{health_text(position.health_factor)}[/]"
        f"{'  LIQUIDATABLE' if position.liquidatable else ''}"
        f"{'  ' + hold_text(position.liquidation_hold) if position.liquidation_hold else ''}"
    )
    table = Table(title=title, title_justify="left")
    for name in ["asset", "collateral", "debt", "price", "LT", "liq. price", "move to liq."]:
        table.add_column(name, justify="left" if name == "asset" else "right")
    scale = 10**position.base_currency_decimals
    unit = position.base_currency or ""
    for a in position.assets:
        liq = a.liquidation_price_base
        move = None if liq is None else liq / a.price_base - 1
        held = position.has_debt and not position.liquidatable and liq is None
        table.add_row(
            a.symbol,
            f"{a.collateral_raw / 10**a.decimals:,.6g}" if a.collateral_raw else "",
            f"{a.debt_raw / 10**a.decimals:,.6g}" if a.debt_raw else "",
            f"{a.price_base / scale:,.4f} {unit}".strip(),
            f"{a.liquidation_threshold_bps / 100:.2f}%" if a.collateral_enabled else "",
            "none" if held else ("" if liq is None else f"{liq / scale:,.4f}"),
            move_text(move),
        )
    table.caption = (
        "liq. price: the price of that asset alone (others held) at which the position becomes "
        "liquidatable; none: its price alone cannot make it liquidatable"
    )
    table.caption_justify = "left"
    return table


def _main_collateral(position: Position) -> AssetPosition | None:
    enabled = [a for a in position.assets if a.collateral_enabled and a.collateral_raw]
    return max(enabled, key=lambda a: a.collateral_base) if enabled else None


def _amounts(assets: Sequence[AssetPosition], debt: bool) -> str:
    held = [a for a in assets if (a.debt_raw if debt else a.collateral_raw)]
    if not held:
        return ""
    top = max(held, key=lambda a: a.debt_base if debt else a.collateral_base)
    raw = top.debt_raw if debt else top.collateral_raw
    more = f" +{len(held) - 1}" if len(held) > 1 else ""
    return f"{raw / 10**top.decimals:,.6g} {top.symbol}{more}"


def watch_table(
    positions: Sequence[Position],
    title: str,
    risk: Sequence[dict[str, Any]] | None = None,
    names: Mapping[str, str] | None = None,
    wallet_column: bool = True,
    chains: Sequence[str] | None = None,
) -> Table:
    """One row per position, any protocol: health, how far the main collateral's price may
    move before the position is liquidatable (next to the health, coloured when near), its
    liquidation price (others held), and the probability within the horizon the header names.
    `names`: market address (lower case) -> its config name, shown instead of the address.
    Without `wallet_column` (narrow terminals, one table per wallet) the title names it.
    `chains`: per row, the chain's config name (several chains in one table)."""
    horizon = horizon_text(risk[0]["horizon_s"]) if risk else ""
    table = Table(title=title, title_justify="left")
    for name, justify in [
        *([("chain", "left")] if chains is not None else []),
        *([("wallet", "left")] if wallet_column else []),
        ("protocol", "left"),
        ("market", "left"),
        ("collateral", "right"),
        ("debt", "right"),
        ("health", "right"),
        ("move to liq.", "right"),
        ("liq. price", "right"),
        *(
            [(f"P(liq.) in {horizon}", "right"), (f"safe HF ({horizon})", "right")]
            if risk is not None
            else []
        ),
        ("status", "left"),
    ]:
        table.add_column(name, justify=justify, **_never_cut(name == "wallet"))  # type: ignore[arg-type]
    for i, p in enumerate(positions):
        main = _main_collateral(p)
        liq = main.liquidation_price_base if main else None
        scale = 10**p.base_currency_decimals
        unit = p.base_currency or ""
        liq_text = "" if main is None or liq is None else f"{liq / scale:,.4f} {unit}".strip()
        move = None if main is None or liq is None else liq / main.price_base - 1
        if p.has_debt and main is not None and liq is None and not p.liquidatable:
            liq_text = f"none: {main.symbol} alone cannot liquidate it"
        status = status_text(p)
        table.add_row(
            *([chains[i]] if chains is not None else []),
            *([p.account] if wallet_column else []),
            p.protocol,
            p.market_label or (names or {}).get(p.market.lower()) or market_text(p),
            _amounts(p.assets, debt=False),
            _amounts(p.assets, debt=True),
            f"[{health_style(p)}]{health_text(p.health_factor)}[/]",
            move_text(move),
            f"{liq_text} ({main.symbol})" if liq is not None and main else liq_text,
            *(
                [probability_text(risk[i]["liquidation_probability"]), _safe_hf(risk[i])]
                if risk is not None
                else []
            ),
            tier_text(p, risk[i])
            if risk is not None
            else (f"[{health_style(p)}]{status}[/]" if p.liquidatable else status),
        )
    return table


def _safe_hf(fields: dict[str, Any]) -> str:
    safe = fields.get("safe_health_factor")
    return "" if safe is None else f"{safe:.4f}"


def advice_lines(positions: Sequence[Position], risk: Sequence[dict[str, Any]]) -> list[str]:
    """What each borrower can do: repay or top up, either alone enough to reach the target."""
    lines = []
    for p, fields in zip(positions, risk, strict=True):
        advice = fields.get("advice")
        if not advice or p.liquidatable:
            continue
        decimals = {a.symbol: a.decimals for a in p.assets}
        options = [
            f"repay {int(v) / 10 ** decimals[s]:,.6g} {s}" for s, v in advice["repay_raw"].items()
        ]
        options += [
            f"add {int(v) / 10 ** decimals[s]:,.6g} {s}" for s, v in advice["top_up_raw"].items()
        ]
        if options:
            lines.append(
                f"{p.account} ({p.protocol} {market_text(p)}): to bring P(liquidation within "
                f"{fields['horizon_s']:.0f}s) under {advice['target_probability']:.0%}: "
                + " or ".join(options)
            )
    return lines
