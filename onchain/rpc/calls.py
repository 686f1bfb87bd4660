"""Run many contract reads at one block: through Multicall3 when the chain has it, else batches.

Thousands of reads per snapshot are the norm here, so calldata is built by callers with raw
eth_abi and aggregate3 is encoded and decoded once per chunk, not once per call.

A revert and a provider's failure are told apart as follows. Every aggregate3 entry is sent
with allowFailure=true, so the aggregate3 call itself cannot revert: a JSON-RPC error on a
chunk is always the provider's (overload, lag: retried by the client, that chunk alone; a gas
cap or size limit: the chunk is split). Inside a chunk's answer, (success=false, data) was
written by the EVM at the pinned block, where a provider cannot inject an error: with revert
data it is the call's revert. Only an entry that failed with no data is ambiguous (a bare
`revert()` or a call starved of gas by the 63/64 rule under the provider's gas cap), so those
are asked again as plain eth_calls, whose own errors are classified like any other.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from onchain.errors import CallReverted, InputError, RpcError, RpcUnavailable
from onchain.rpc.client import BlockRef, RpcClient, block_param, call_object, hex_to_bytes, reverted
from onchain.rpc.endpoints import EndpointSet
from onchain.rpc.multicall import MULTICALL3_ADDRESS, decode_aggregate3, encode_aggregate3


@dataclass(frozen=True)
class Call:
    """One read: `decode` turns the return data into a value (raw bytes when None).

    With allow_failure, a revert (or undecodable data) yields None instead of raising.
    """

    target: str
    data: bytes
    decode: Callable[[bytes], Any] | None = None
    allow_failure: bool = False


@dataclass
class _Probe:
    """What we know about Multicall3 on one chain's endpoints: code never leaves once deployed."""

    present_from: int | None = None
    absent_upto: int = -1


_PROBES: weakref.WeakKeyDictionary[EndpointSet, _Probe] = weakref.WeakKeyDictionary()
_Outcome = tuple[bool, bytes]
_LIMIT_TEXT = re.compile(r"gas|limit|exceed|too large|too big|size|time ?out|timed out", re.I)


CHUNKS_PER_REQUEST = 4


def has_multicall3(client: RpcClient, block: BlockRef) -> bool:
    """Whether Multicall3 has code at `block`; asks the node once per endpoint set and block
    range (the daemon makes a client per run over the same endpoint set: one probe, not one a
    block).

    Code never leaves once deployed, so "present at N" holds for later blocks and "absent at N"
    for earlier ones. (A devnet that installs it with anvil_setCode at an already-probed block
    needs a new client over a new endpoint set.)
    """
    probe = _PROBES.setdefault(client.endpoints, _Probe())
    if probe.present_from is not None and block.number >= probe.present_from:
        return True
    if block.number <= probe.absent_upto:
        return False
    present = bool(client.get_code(MULTICALL3_ADDRESS, block))
    if present:
        known = probe.present_from
        probe.present_from = block.number if known is None else min(block.number, known)
    else:
        probe.absent_upto = max(block.number, probe.absent_upto)
    return present


def execute(
    client: RpcClient,
    calls: Sequence[Call],
    block: BlockRef,
    *,
    chunk_size: int = 500,
    use_multicall: bool | None = None,
) -> list[Any]:
    """Results of `calls` at `block`, in order.

    Via Multicall3 aggregate3 (chunk_size calls per eth_call, all chunks in one HTTP batch) when
    it is deployed, else one JSON-RPC batch of eth_calls. A failed call returns None with
    allow_failure, otherwise raises CallReverted naming its target. Keep chunk_size * gas per
    call under the provider's eth_call gas cap (often 50M); a chunk the node refuses is split.
    use_multicall forces one path (True fails on a chain without Multicall3); None decides.
    """
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    if not calls:
        return []
    if use_multicall is None:
        use_multicall = has_multicall3(client, block)
    if use_multicall:
        outcomes = _via_multicall(client, calls, block, chunk_size)
    else:
        outcomes = _via_batch(client, calls, block)
    return [_finish(call, ok, data) for call, (ok, data) in zip(calls, outcomes, strict=True)]


def _via_batch(client: RpcClient, calls: Sequence[Call], block: BlockRef) -> list[_Outcome]:
    pinned = block_param(block)
    answers = client.batch(
        [("eth_call", [call_object(c.target, c.data), pinned]) for c in calls], return_errors=True
    )
    outcomes: list[_Outcome] = []
    for answer in answers:
        if isinstance(answer, CallReverted):
            outcomes.append((False, answer.data))
        elif isinstance(answer, Exception):
            raise answer  # not a revert: the node failed, so no result is trustworthy
        else:
            outcomes.append((True, hex_to_bytes(answer)))
    return outcomes


def _via_multicall(
    client: RpcClient, calls: Sequence[Call], block: BlockRef, chunk_size: int
) -> list[_Outcome]:
    spans = [(i, min(i + chunk_size, len(calls))) for i in range(0, len(calls), chunk_size)]
    outcomes: list[_Outcome] = [(False, b"")] * len(calls)
    pinned = block_param(block)
    while spans:
        # Every call is sent with allowFailure=true so one revert cannot hide the others'
        # results; whether a failure is acceptable is decided per call in _finish().
        requests = [
            (
                "eth_call",
                [
                    call_object(
                        MULTICALL3_ADDRESS,
                        encode_aggregate3([(c.target, True, c.data) for c in calls[lo:hi]]),
                    ),
                    pinned,
                ],
            )
            for lo, hi in spans
        ]
        # A few aggregate3 chunks per HTTP request: nodes cap request bodies (anvil ~2 MB), and
        # the endpoints' budget caps calls per batch. A chunk answered with a transient error
        # object is asked again by the client on its own; what comes back here is final.
        per_request = min(CHUNKS_PER_REQUEST, client.max_batch_size)
        answers: list[Any] = []
        for g in range(0, len(requests), per_request):
            answers += client.batch(requests[g : g + per_request], return_errors=True)
        retry: list[tuple[int, int]] = []
        for (lo, hi), answer in zip(spans, answers, strict=True):
            if isinstance(answer, RpcError):
                if not _chunk_too_big(answer):
                    raise answer
                # The chunk hit the node's gas cap or a size limit: halve it.
                if hi - lo == 1:
                    outcomes[lo] = _direct(client, calls[lo], block)
                else:
                    mid = (lo + hi) // 2
                    retry += [(lo, mid), (mid, hi)]
                continue
            outcomes[lo:hi] = decode_aggregate3(hex_to_bytes(answer))
        spans = retry
    _recheck_empty_failures(client, calls, block, outcomes)
    return outcomes


def _chunk_too_big(exc: RpcError) -> bool:
    """Whether a failed aggregate3 looks like a gas cap / size / time limit a smaller chunk fits."""
    if isinstance(exc, RpcUnavailable):
        return False
    if getattr(exc, "http_status", None) == 413:
        return True
    return _LIMIT_TEXT.search(str(exc)) is not None


def _recheck_empty_failures(
    client: RpcClient, calls: Sequence[Call], block: BlockRef, outcomes: list[_Outcome]
) -> None:
    """Re-run failures with no revert data as plain eth_calls.

    Inside aggregate3 a call can fail only because the batch ran short of gas (63/64 rule),
    which looks exactly like a bare revert; a direct call tells the two apart.
    """
    suspects = [i for i, (ok, data) in enumerate(outcomes) if not ok and not data]
    if suspects:
        rechecked = _via_batch(client, [calls[i] for i in suspects], block)
        for i, outcome in zip(suspects, rechecked, strict=True):
            outcomes[i] = outcome


def _direct(client: RpcClient, call: Call, block: BlockRef) -> _Outcome:
    try:
        return True, client.eth_call(call.target, call.data, block)
    except CallReverted as exc:
        return False, exc.data


def _finish(call: Call, ok: bool, data: bytes) -> Any:
    if ok:
        if call.decode is None:
            return data
        try:
            return call.decode(data)
        except Exception as exc:  # any decoder: eth_abi, int.from_bytes, user lambdas
            if call.allow_failure:
                return None
            selector = call.data[:4].hex() or "none"
            raise RpcError(
                f"call to {call.target} (selector 0x{selector}) returned data that does not "
                f"decode ({len(data)} bytes): {exc}"
            ) from exc
    if call.allow_failure:
        return None
    raise reverted(call.target, call.data, data)
