"""The `deliver` job: send what the outbox holds, one thread per channel, so a channel that
fails or hangs never holds back another. Within a channel alerts go oldest first, and the
first failure ends that channel's turn (its later alerts would meet the same wall); the
failed delivery waits its backoff. Every attempt is recorded. A crash between a send and its
record means the alert is sent again after the restart, with the same id: at least once."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from onchain.alerts import outbox
from onchain.alerts.channels import send
from onchain.alerts.config import AlertsConfig, ChannelConfig
from onchain.store.db import Store

log = logging.getLogger("onchain.alerts")


def deliver_channel(
    store: Store, cfg: AlertsConfig, channel: ChannelConfig, stop: threading.Event | None = None
) -> tuple[int, int, int]:
    """(delivered, retry later, failed for good) for one channel's due alerts."""
    delivered = retry = failed = 0
    for item in outbox.due(store, [channel.name], cfg.delivery.batch):
        if stop is not None and stop.is_set():
            break
        result = send(channel, item.payload)
        state = outbox.record(
            store,
            cfg.delivery,
            item,
            ok=result.ok,
            status=result.status,
            error=result.error,
            duration_ms=result.duration_ms,
        )
        if state == "delivered":
            delivered += 1
            log.info(
                "alert %s %s -> %s delivered", item.uid[:12], item.payload["kind"], channel.shown
            )
            continue
        if state == "failed":
            failed += 1
            log.error(
                "alert %s -> %s failed for good after %d attempts: %s",
                item.uid[:12],
                channel.shown,
                item.attempts + 1,
                result.error,
            )
        else:
            retry += 1
            log.warning(
                "alert %s -> %s attempt %d failed (%s); will retry",
                item.uid[:12],
                channel.shown,
                item.attempts + 1,
                result.error,
            )
        break  # this channel is down: its later alerts wait for the retry
    return delivered, retry, failed


def deliver_all(
    store: Store, cfg: AlertsConfig, stop: threading.Event | None = None
) -> dict[str, int]:
    channels = list(cfg.channels.values())
    totals = {"delivered": 0, "retry": 0, "failed": 0}
    if not channels:
        return totals
    with ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="deliver") as pool:
        for done, later, gone in pool.map(lambda c: deliver_channel(store, cfg, c, stop), channels):
            totals["delivered"] += done
            totals["retry"] += later
            totals["failed"] += gone
    return totals


def deliver_job(ctx: Any, counts: Any) -> list[str]:
    """The daemon's job: nothing to do without channels."""
    cfg: AlertsConfig = ctx.config.alerts
    totals = deliver_all(ctx.store, cfg, ctx.stop)
    for key, value in totals.items():
        if value:
            counts[f"alerts_{key}"] += value
    return []
