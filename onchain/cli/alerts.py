"""`onchain alerts test|list`: check that each channel reaches someone, and see what was sent.
Channels are shown by name and URL scheme only: URLs and secrets never reach the terminal."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from onchain.cli.common import CsvOpt, JsonOpt, LazyConsole, check_output_flags, escape, write_csv
from onchain.cli.stored import opened_store
from onchain.errors import InputError

if TYPE_CHECKING:
    from onchain.alerts.config import ChannelConfig

out = LazyConsole(pipe_width=160)
alerts_app = typer.Typer(help="Alert channels and the alerts sent", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", help="TOML config with [alerts]")]


def test_payload(channel: ChannelConfig) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4().hex,
        "kind": "test",
        "rule": None,
        "account": None,
        "protocol": None,
        "market": None,
        "chain_id": None,
        "block_number": None,
        "block_hash": None,
        "tier": None,
        "previous_tier": None,
        "health_factor": None,
        "reasons": [],
        "sent_at": now.isoformat(),
        "text": f"TEST onchain alerts reach channel {channel.name} ({now:%Y-%m-%d %H:%M:%S} UTC).",
    }


@alerts_app.command("test")
def alerts_test(
    config: ConfigOpt,
    channel: Annotated[
        str | None, typer.Option("--channel", help="only this channel (default: every one)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a test message to each channel and say what happened (exit 1 if one failed)."""
    from onchain.alerts.channels import send
    from onchain.config import load_config
    from onchain.output import strict_json

    cfg = load_config(config)
    channels = cfg.alerts.channels
    if not channels:
        raise InputError(f"{config}: no [[alerts.channels]]")
    if channel is not None and channel not in channels:
        raise InputError(f"unknown channel {channel!r} (known: {', '.join(channels)})")
    chosen = [channels[channel]] if channel else list(channels.values())
    results = []
    for c in chosen:
        r = send(c, test_payload(c))
        results.append(
            {
                "channel": c.name,
                "scheme": c.scheme,
                "ok": r.ok,
                "status": r.status,
                "error": r.error,
                "duration_ms": r.duration_ms,
            }
        )
    if as_json:
        print(strict_json(results))
    else:
        for row in results:
            what = "delivered" if row["ok"] else f"FAILED: {row['error']}"
            out.print(
                escape(f"{row['channel']} ({row['scheme']}): {what} in {row['duration_ms']} ms"),
                highlight=False,
            )
    if not all(row["ok"] for row in results):
        sys.exit(1)  # a channel failed: scripts must see it


# --csv: one row per alert; its deliveries in one cell ("channel: state (attempts)", "; ")
ALERT_FIELDS = (
    "id",
    "created_at",
    "kind",
    "rule",
    "tier",
    "previous_tier",
    "account",
    "market",
    "chain_id",
    "block_number",
    "health_factor",
    "deliveries",
    "text",
)


def _deliveries(alert: dict[str, Any]) -> str:
    return "; ".join(f"{d['channel']}: {d['state']} ({d['attempts']})" for d in alert["deliveries"])


@alerts_app.command("list")
def alerts_list(
    config: ConfigOpt,
    db: Annotated[str | None, typer.Option("--db", help="database URL")] = None,
    limit: Annotated[int, typer.Option("--limit", help="newest alerts")] = 20,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """The newest alerts and each channel's delivery state."""
    from rich.table import Table

    from onchain.alerts.outbox import recent
    from onchain.output import strict_json

    check_output_flags(as_json, as_csv)
    if limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    with opened_store(db, config) as store:
        rows = recent(store, limit)
    if as_json:
        print(strict_json(rows))
        return
    if as_csv:
        write_csv([{**r, "deliveries": _deliveries(r)} for r in rows], ALERT_FIELDS)
        return
    if not rows:
        out.print("no alerts yet")
        return
    table = Table(title=f"newest {len(rows)} alert(s)")
    for col in ("created (UTC)", "kind", "tier", "account", "market", "block", "delivery"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["created_at"][:19].replace("T", " "),
            r["kind"],
            r["tier"] or "",
            r["account"] or "",
            r["market"] or "",
            str(r["block_number"]),
            "\n".join(
                f"{d['channel']}: {d['state']} ({d['attempts']} attempt(s))"
                + (f" {d['last_error']}" if d["last_error"] and d["state"] != "delivered" else "")
                for d in r["deliveries"]
            ),
        )
    out.print(table)
