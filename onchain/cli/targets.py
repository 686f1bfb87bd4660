"""`onchain targets`: liquidation targets ranked by net profit, for a liquidator bot. Flags follow
`scan`/`watch` (--rpc, --protocol, --market, --config, --chain, --chain-id, --block); with
--config and no --market every configured market of the chain is searched at one block. A
human table by default, --json a stable list; bad input is one line on stderr and exit 2."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onchain.cli.common import (
    BlockOpt,
    ChainIdOpt,
    ChainOpt,
    ConfigOpt,
    CsvOpt,
    DeploymentOpt,
    MarketOpt,
    ProtocolOpt,
    RpcOpt,
    TimeoutOpt,
    check_output_flags,
    err,
    escape,
    open_client,
    out,
    progress_bars,
    resolve_markets,
    write_csv,
)
from onchain.errors import ConfigError, InputError
from onchain.numbers import truncated

if TYPE_CHECKING:
    from onchain.app.targets import TargetSettings

# keys of the config's [risk.targets] table (all optional; flags win)
TARGET_KEYS = {
    "dex_factory",
    "dex_quoter",
    "fee_tiers",
    "native_symbol",
    "native_price_usd",
    "priority_fee_gwei",
    "swap_gas",
    "liquidation_gas",
}


def targets_cmd(
    rpc: RpcOpt = None,
    protocol: ProtocolOpt = None,
    market: MarketOpt = None,
    block: BlockOpt = None,
    config: ConfigOpt = None,
    chain_id: ChainIdOpt = None,
    chain: ChainOpt = None,
    deployment: DeploymentOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    as_csv: CsvOpt = False,
    limit: Annotated[int, typer.Option("--limit", help="rows in the human table (0: all)")] = 30,
    profitable_only: Annotated[
        bool, typer.Option("--profitable-only", help="leave out targets that lose money")
    ] = False,
    no_pending: Annotated[
        bool, typer.Option("--no-pending", help="only positions liquidatable now")
    ] = False,
    dex_factory: Annotated[
        str | None,
        typer.Option("--dex-factory", help="UniswapV3Factory to sell seized collateral into"),
    ] = None,
    dex_quoter: Annotated[
        str | None,
        typer.Option("--dex-quoter", help="QuoterV2 for exact quotes (else a pool model)"),
    ] = None,
    native_price_usd: Annotated[
        float | None,
        typer.Option(
            "--native-price-usd",
            help="USD price of the gas token (default: the oracle price of --native-symbol)",
        ),
    ] = None,
    native_symbol: Annotated[
        str | None, typer.Option("--native-symbol", help="the gas token's symbol (WETH)")
    ] = None,
    priority_fee_gwei: Annotated[
        float | None, typer.Option("--priority-fee-gwei", help="tip on top of the base fee")
    ] = None,
    swap_gas: Annotated[
        int | None, typer.Option("--swap-gas", help="gas of the swap (default: a typical DEX swap)")
    ] = None,
    liquidation_gas: Annotated[
        int | None,
        typer.Option("--liquidation-gas", help="gas of the liquidation (adapter's default)"),
    ] = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Positions liquidatable now (and one oracle update away), each with its best call:
    debt repaid, collateral seized with the bonus, gas, DEX slippage and net profit."""
    from onchain.config import load_config
    from onchain.output import strict_json
    from onchain.rpc.client import redact_url

    check_output_flags(as_json, as_csv, limit)
    flags = {
        "dex_factory": dex_factory,
        "dex_quoter": dex_quoter,
        "native_price_usd": native_price_usd,
        "native_symbol": native_symbol,
        "priority_fee_gwei": priority_fee_gwei,
        "swap_gas": swap_gas,
        "liquidation_gas": liquidation_gas,
    }
    references: tuple[Any, ...] = ()
    table: dict[str, Any] = {}
    if config is not None:
        cfg = load_config(config)
        table = _targets_table(cfg.risk)
        references = cfg.risk_settings.references  # [risk.references], checked by load_config
    settings = _settings(table, flags, references, include_pending=not no_pending)
    url, refs, expected = resolve_markets(
        rpc, protocol, market, config, chain_id, chain, deployment
    )
    if block is not None and block < 0:
        raise InputError(f"--block must be >= 0, got {block}")
    client = open_client(url, expected, timeout)
    from onchain.app.targets import find_targets

    with progress_bars(not (as_json or as_csv)) as progress:
        result = find_targets(client, refs, settings, block_number=block, progress=progress)
    targets = [t for t in result.targets if t.profitable or not profitable_only]
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    gapped = [t for t in targets if gap_made(t)]
    if gapped:
        err.print(
            f"[yellow]warning:[/] {len(gapped)} target(s) earn more from the DEX paying above "
            "the oracle price than from the liquidation bonus: that gap can close before "
            "the call lands (see dex_oracle_gap_base)"
        )
    if as_json:
        print(strict_json([_json_row(t) for t in targets]))
        return
    if as_csv:
        write_csv([_json_row(t) for t in targets], CSV_FIELDS)
        return
    _print_table(result, targets, limit, redact_url(url))


# --csv: the JSON row's flat fields (the call arguments stay in the JSON)
CSV_FIELDS = (
    "account",
    "protocol",
    "market",
    "block_number",
    "block_hash",
    "tier",
    "pending",
    "health_factor",
    "health_factor_pending",
    "collateral_symbol",
    "collateral_asset",
    "debt_symbol",
    "debt_asset",
    "close_factor",
    "debt_to_cover_raw",
    "collateral_seized_raw",
    "protocol_fee_raw",
    "bad_debt_raw",
    "bonus",
    "base_currency",
    "base_currency_decimals",
    "debt_to_cover_base",
    "collateral_seized_base",
    "gas_units",
    "gas_price_wei",
    "gas_cost_base",
    "dex_source",
    "dex_pool",
    "dex_fee",
    "dex_out_raw",
    "dex_out_base",
    "slippage_bps",
    "net_profit_base",
    "net_profit_usd",
    "profitable",
    "dex_oracle_gap_base",
    "profit_from_oracle_gap",
)


def oracle_gap_base(target: Any) -> float:
    """What the DEX pays for the seized collateral above its oracle value (base currency); the
    bonus is what the protocol pays, this part is a price gap that may close first."""
    return max(0.0, target.dex_out_base - target.collateral_seized_base)


def gap_made(target: Any) -> bool:
    """The profit rests on the DEX-oracle gap more than on the bonus."""
    bonus = target.collateral_seized_base - target.debt_to_cover_base
    return target.profitable and oracle_gap_base(target) > max(bonus, 0.0)


def _json_row(target: Any) -> dict[str, Any]:
    row: dict[str, Any] = target.to_json()
    row["dex_oracle_gap_base"] = oracle_gap_base(target)
    row["profit_from_oracle_gap"] = gap_made(target)
    return row


def _targets_table(risk: dict[str, Any]) -> dict[str, Any]:
    """[risk.targets] (DEX, gas, native price), its keys checked."""
    table = risk.get("targets") or {}
    if not isinstance(table, dict):
        raise ConfigError("[risk.targets] must be a table")
    unknown = set(table) - TARGET_KEYS
    if unknown:
        raise ConfigError(
            f"[risk.targets]: unknown key(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(TARGET_KEYS))})"
        )
    return table


def _settings(
    table: dict[str, Any],
    flags: dict[str, Any],
    references: tuple[Any, ...],
    *,
    include_pending: bool,
) -> TargetSettings:
    """Flags over [risk.targets] over defaults, each value checked once."""
    from onchain.app.pipeline import checked_address
    from onchain.app.targets import (
        DEFAULT_FEE_TIERS,
        DEFAULT_SWAP_GAS,
        DexConfig,
        TargetSettings,
    )

    def pick(key: str) -> Any:
        return flags.get(key) if flags.get(key) is not None else table.get(key)

    factory, quoter = pick("dex_factory"), pick("dex_quoter")
    if quoter is not None and factory is None:
        raise InputError("--dex-quoter needs --dex-factory (pools are found through the factory)")
    dex = None
    if factory is not None:
        tiers = table.get("fee_tiers", list(DEFAULT_FEE_TIERS))
        if not isinstance(tiers, list) or not all(isinstance(t, int) and t > 0 for t in tiers):
            raise ConfigError(f"[risk.targets] fee_tiers must be positive integers, got {tiers!r}")
        dex = DexConfig(
            checked_address(str(factory), "DEX factory address"),
            checked_address(str(quoter), "DEX quoter address") if quoter is not None else None,
            tuple(tiers),
        )
    price = pick("native_price_usd")
    if price is not None and not (isinstance(price, int | float) and math.isfinite(price)):
        raise InputError(f"native price must be a number, got {price!r}")
    if price is not None and price <= 0:
        raise InputError(f"--native-price-usd must be > 0, got {price}")
    tip = pick("priority_fee_gwei") or 0.0
    if not isinstance(tip, int | float) or tip < 0:
        raise InputError(f"--priority-fee-gwei must be >= 0, got {tip!r}")
    gas = {k: pick(k) for k in ("swap_gas", "liquidation_gas")}
    for key, value in gas.items():
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InputError(f"--{key.replace('_', '-')} must be a non-negative integer")
    return TargetSettings(
        dex=dex,
        native_symbol=str(pick("native_symbol") or "WETH"),
        native_price_usd=float(price) if price is not None else None,
        swap_gas=gas["swap_gas"] if gas["swap_gas"] is not None else DEFAULT_SWAP_GAS,
        liquidation_gas=gas["liquidation_gas"],
        priority_fee_wei=round(float(tip) * 1e9),
        references=references,
        include_pending=include_pending,
    )


def _short(value: str) -> str:
    return value if len(value) <= 14 else f"{value[:8]}…{value[-4:]}"


def _print_table(result: Any, targets: list[Any], limit: int, url: str) -> None:
    from rich.table import Table

    from onchain.output import health_text

    shown = targets if limit <= 0 else targets[:limit]
    title = (
        f"liquidation targets at block {result.block.number} {result.block.hash[:12]}… via {url}: "
        f"base fee {result.base_fee_wei / 1e9:.3g} gwei, native ${result.native_price_usd:,.2f}"
    )
    table = Table(title=title, title_justify="left")
    for name in (
        "#",
        "tier",
        "protocol",
        "market",
        "account",
        "HF",
        "coll/debt",
        "repay",
        "seize",
        "bonus",
        "gas",
        "slip bps",
        "net profit",
        "",
    ):
        right = name in {"#", "HF", "repay", "seize", "bonus", "gas", "slip bps", "net profit"}
        table.add_column(name, justify="right" if right else "left")
    for rank, t in enumerate(shown, 1):
        hf = "-" if t.health_factor is None else health_text(t.health_factor)
        if t.pending and t.health_factor_pending is not None:
            hf += f"→{truncated(t.health_factor_pending)}"
        unit = t.base_currency if t.base_currency != "USD" else "$"
        profit = f"{t.net_profit_base:,.2f} {unit}"
        table.add_row(
            str(rank),
            t.tier,
            t.protocol,
            _short(t.market),
            _short(t.account),
            hf,
            f"{t.collateral_symbol}/{t.debt_symbol}",
            f"{t.debt_to_cover_base:,.2f}",
            f"{t.collateral_seized_base:,.2f}",
            f"{t.quote.bonus * 100:.2f}%",
            f"{t.gas_cost_base:,.2f}",
            f"{t.slippage_bps:.1f}" + ("" if t.dex_source in {"quoter", "same-asset"} else "*"),
            f"[green]{profit}[/]" if t.profitable else f"[red]{profit}[/]",
            "unprofitable" if not t.profitable else ("oracle gap" if gap_made(t) else ""),
        )
    out.print(table)
    profitable = sum(t.profitable for t in targets)
    pending = sum(t.pending for t in targets)
    out.print(
        f"{len(targets)} targets from {result.positions_read} positions with debt: "
        f"{profitable} profitable, {pending} pending (one oracle update away)"
        + (f"; showing {len(shown)} (--limit 0 for all)" if len(shown) < len(targets) else "")
        + "; * slippage from the pool model or the oracle price (no quoter / no pool)"
    )
