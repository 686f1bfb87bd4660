"""JSON-RPC access: a pinned-block client, batched contract reads and paged logs."""

from onchain.rpc.calls import Call, execute, has_multicall3
from onchain.rpc.client import BlockRef, RpcClient, redact_url, revert_reason
from onchain.rpc.endpoints import Budget, Endpoint, EndpointSet
from onchain.rpc.logs import Log, LogPage, is_range_refusal, iter_logs
from onchain.rpc.multicall import MULTICALL3_ADDRESS, decode_aggregate3, encode_aggregate3

__all__ = [
    "MULTICALL3_ADDRESS",
    "BlockRef",
    "Budget",
    "Call",
    "Endpoint",
    "EndpointSet",
    "Log",
    "LogPage",
    "RpcClient",
    "decode_aggregate3",
    "encode_aggregate3",
    "execute",
    "has_multicall3",
    "is_range_refusal",
    "iter_logs",
    "redact_url",
    "revert_reason",
]
