"""Paged eth_getLogs that adapts its block span to whatever range the provider accepts.

Providers cap eth_getLogs differently (block span, result count, response size) and say so in
free text, so the pager halves the span on any such refusal and grows it again after successes.
Each page is asked of an endpoint whose head has reached the page's last block (a lagging node
answers a range past its head with fewer logs, not an error); requests per second follow the
endpoint's budget in the client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from onchain.errors import InputError, RpcError, RpcResponseError
from onchain.rpc.client import RpcClient, hex_to_bytes
from onchain.rpc.faults import is_log_range_refusal

_SINGLE_BLOCK_RETRIES = 3  # a one-block query refused for its "size": may be overload, ask again
_GROW_AFTER = 4  # successes in a row at the ceiling before trying a larger span again


@dataclass(frozen=True)
class Log:
    """One event log, with hex fields already turned into bytes (address stays lowercase hex)."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    block_hash: str
    transaction_hash: str
    log_index: int


@dataclass(frozen=True)
class LogPage:
    """The logs of blocks from_block..to_block (inclusive); pages never overlap."""

    from_block: int
    to_block: int
    logs: list[Log]


def is_range_refusal(exc: RpcError) -> bool:
    """Whether the provider refused the query for its size (a smaller span may pass)."""
    if not isinstance(exc, RpcResponseError):
        return False
    return is_log_range_refusal(exc.code, str(exc), exc.http_status)


def iter_logs(
    client: RpcClient,
    *,
    address: str | list[str],
    topics: list[Any],
    from_block: int,
    to_block: int,
    initial_span: int = 10_000,
    max_span: int = 500_000,
) -> Iterator[LogPage]:
    """Yield LogPages covering from_block..to_block in order, each log exactly once.

    On a range refusal the span halves and the same start is retried; after a success it
    doubles, but not beyond half the last refused span until _GROW_AFTER successes in a row
    (so a block-count cap is not hit on every other request). A refusal of a single-block
    query raises RpcError.
    """
    if from_block < 0 or to_block < 0:
        raise InputError(f"log range must be non-negative, got {from_block}..{to_block}")
    if initial_span < 1 or max_span < 1:
        raise InputError("initial_span and max_span must be >= 1")
    flt: dict[str, Any] = {"address": _address_filter(address), "topics": _topics(topics)}
    span = min(initial_span, max_span)
    ceiling = max_span
    streak = 0
    single_refusals = 0
    start = from_block
    while start <= to_block:
        end = min(start + span - 1, to_block)
        params = {**flt, "fromBlock": hex(start), "toBlock": hex(end)}
        try:
            raw = client.logs(params, min_block=end)
        except RpcError as exc:
            if not is_range_refusal(exc):
                raise
            if end == start:
                # Nothing smaller to ask: "limit exceeded" was a passing overload, or final.
                single_refusals += 1
                if single_refusals > _SINGLE_BLOCK_RETRIES:
                    raise RpcError(
                        f"provider refuses eth_getLogs even for the single block {start}: {exc}"
                    ) from exc
                time.sleep(0.2 * 2 ** (single_refusals - 1))
                continue
            span = max(1, (end - start + 1) // 2)
            ceiling, streak = span, 0
            continue
        single_refusals = 0
        yield LogPage(start, end, [parse_log(item) for item in raw or []])
        start = end + 1
        streak += 1
        if streak >= _GROW_AFTER and ceiling < max_span:
            ceiling, streak = min(ceiling * 2, max_span), 0
        span = min(span * 2, ceiling)


def parse_log(item: dict[str, Any]) -> Log:
    return Log(
        address=str(item["address"]).lower(),
        topics=tuple(hex_to_bytes(t) for t in item.get("topics", [])),
        data=hex_to_bytes(item.get("data", "0x")),
        block_number=int(item["blockNumber"], 16),
        block_hash=str(item["blockHash"]),
        transaction_hash=str(item["transactionHash"]),
        log_index=int(item["logIndex"], 16),
    )


def _address_filter(address: str | Sequence[str]) -> str | list[str]:
    if isinstance(address, str):
        return address.lower()
    return [a.lower() for a in address]


def _topics(topics: list[Any]) -> list[Any]:
    """Topic filters as hex: accepts bytes or hex strings, None wildcards and OR-lists."""

    def one(t: Any) -> Any:
        if t is None:
            return None
        if isinstance(t, (bytes, bytearray)):
            return "0x" + bytes(t).hex()
        if isinstance(t, (list, tuple)):
            return [one(x) for x in t]
        return str(t)

    return [one(t) for t in topics]
