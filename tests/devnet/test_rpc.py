"""The RPC layer against a real anvil: Multicall3, batches, block pinning, errors and log paging."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

from onchain.devnet import solc
from onchain.devnet.anvil import DEVNET_CHAIN_ID, Anvil, free_port
from onchain.devnet.multicall import install_multicall3, multicall3_runtime_code
from onchain.devnet.solc import CONTRACTS_DIR, CompiledContract, compile_file, compile_sources
from onchain.errors import (
    CallReverted,
    ChainMismatch,
    DevnetError,
    InputError,
    RpcError,
    RpcResponseError,
    RpcUnavailable,
)
from onchain.rpc import (
    MULTICALL3_ADDRESS,
    BlockRef,
    Call,
    RpcClient,
    decode_aggregate3,
    encode_aggregate3,
    execute,
    has_multicall3,
    is_range_refusal,
    iter_logs,
    redact_url,
)

_JSON = {"Content-Type": "application/json"}
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ANSWER_UPDATED = keccak(text="AnswerUpdated(int256,uint256,uint256)")
HOLDERS = [f"0x{i:040x}" for i in range(0x1001, 0x1009)]


def sel(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


def uint(data: bytes) -> int:
    return int(decode(["uint256"], data)[0])


def contract(name: str) -> CompiledContract:
    return compile_file(CONTRACTS_DIR / f"{name}.sol")[name]


def send_tx(client: RpcClient, to: str | None, data: bytes = b"", value: int = 0) -> dict:
    """Send from anvil's unlocked account (automined) and return the successful receipt."""
    # A fixed gas limit: anvil's exact estimate can fall short when the mined block's timestamp
    # differs from the estimate's (setAnswer then rewrites latestTimestamp at a higher cost).
    tx: dict[str, Any] = {"from": DEPLOYER, "data": "0x" + data.hex(), "value": hex(value)}
    tx["gas"] = hex(3_000_000)
    if to is not None:
        tx["to"] = to
    tx_hash = client.request("eth_sendTransaction", [tx])
    deadline = time.monotonic() + 10
    # anvil answers eth_sendTransaction before its automined block is stored: poll briefly.
    while (receipt := client.request("eth_getTransactionReceipt", [tx_hash])) is None:
        assert time.monotonic() < deadline, f"no receipt for {tx_hash}"
        time.sleep(0.005)
    assert receipt["status"] == "0x1", receipt
    return receipt


def deploy_price_feed(client: RpcClient, answer: int = 2_000 * 10**8, decimals: int = 8) -> str:
    feed = contract("DevnetPriceFeed")
    receipt = send_tx(client, None, feed.bytecode + encode(["int256", "uint8"], [answer, decimals]))
    return str(receipt["contractAddress"])


def set_answer(client: RpcClient, feed: str, answer: int) -> dict:
    return send_tx(client, feed, sel("setAnswer(int256)") + encode(["int256"], [answer]))


def fund_holders(client: RpcClient) -> None:
    for i, holder in enumerate(HOLDERS):
        client.request("anvil_setBalance", [holder, hex((i + 1) * 10**18 + i)])


@pytest.fixture
def client(anvil: Anvil) -> Iterator[RpcClient]:
    with RpcClient(anvil.url) as c:
        yield c


# -- solc -------------------------------------------------------------------------------------


def test_compile_sources_caches_output_and_reports_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(solc, "CACHE_DIR", tmp_path)
    source = {"Box.sol": "pragma solidity ^0.8.19; contract Box { uint256 public x = 7; }"}
    first = compile_sources(source)
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert first["Box"].bytecode and first["Box"].deployed_bytecode
    assert [item["name"] for item in first["Box"].abi] == ["x"]

    def no_solc(*args: object) -> None:
        raise AssertionError("a cached compile must not run solc")

    run_solc = solc._run_solc
    monkeypatch.setattr(solc, "_run_solc", no_solc)
    assert compile_sources(source) == first
    monkeypatch.setattr(solc, "_run_solc", run_solc)

    with pytest.raises(DevnetError, match="DeclarationError"):
        compile_sources(
            {"Bad.sol": "pragma solidity ^0.8.19; contract B { function f() public { y = 1; } }"}
        )
    assert len(list(tmp_path.glob("*.json"))) == 1  # failures are not cached


def test_compile_sources_resolves_imports_from_node_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(solc, "CACHE_DIR", tmp_path)
    source = {
        "UsesMorphoLib.sol": (
            "pragma solidity 0.8.19;\n"
            'import {MathLib} from "@morpho-org/morpho-blue/src/libraries/MathLib.sol";\n'
            "contract UsesMorphoLib { function f(uint256 x) external pure returns (uint256) {"
            " return MathLib.wMulDown(x, 2e18); } }"
        )
    }
    assert compile_sources(source)["UsesMorphoLib"].deployed_bytecode


def test_multicall3_abi_matches_the_canonical_one() -> None:
    abi = contract("Multicall3").abi
    signatures = {
        f"{f['name']}({','.join(_abi_type(i) for i in f['inputs'])})"
        for f in abi
        if f["type"] == "function"
    }
    assert signatures == {
        "aggregate3((address,bool,bytes)[])",
        "getBlockNumber()",
        "getCurrentBlockTimestamp()",
        "getEthBalance(address)",
        "getBlockHash(uint256)",
    }
    aggregate3 = next(f for f in abi if f.get("name") == "aggregate3")
    assert aggregate3["stateMutability"] == "payable"
    assert [_abi_type(o) for o in aggregate3["outputs"]] == ["(bool,bytes)[]"]


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][len('tuple') :]}"
    return str(param["type"])


# -- Multicall3 and execute() --------------------------------------------------------------------


def test_aggregate3_results_equal_individual_eth_calls(anvil: Anvil, client: RpcClient) -> None:
    assert install_multicall3(anvil.url) == MULTICALL3_ADDRESS
    fund_holders(client)
    send_tx(client, HOLDERS[0], value=1)  # mine a block so getBlockHash(0) is in range
    block = client.pin_block()
    assert client.get_code(MULTICALL3_ADDRESS, block) == multicall3_runtime_code()

    datas = [sel("getEthBalance(address)") + encode(["address"], [h]) for h in HOLDERS]
    datas += [
        sel("getBlockNumber()"),
        sel("getCurrentBlockTimestamp()"),
        sel("getBlockHash(uint256)") + encode(["uint256"], [0]),
    ]
    individual = [client.eth_call(MULTICALL3_ADDRESS, d, block) for d in datas]
    assert uint(individual[len(HOLDERS)]) == block.number
    assert uint(individual[len(HOLDERS) + 1]) == block.timestamp
    assert "0x" + individual[-1].hex() == client.pin_block(0).hash
    assert [uint(r) for r in individual[: len(HOLDERS)]] == [
        client.get_balance(h, block) for h in HOLDERS
    ]

    bad = sel("getEthBalance(address)")  # no argument: the ABI decoder reverts
    aggregate = [(MULTICALL3_ADDRESS, False, d) for d in datas] + [(MULTICALL3_ADDRESS, True, bad)]
    results = decode_aggregate3(
        client.eth_call(MULTICALL3_ADDRESS, encode_aggregate3(aggregate), block)
    )
    assert results == [(True, r) for r in individual] + [(False, b"")]

    # Like the canonical contract, a failing call with allowFailure=false reverts the whole batch.
    strict = [*aggregate[:-1], (MULTICALL3_ADDRESS, False, bad)]
    with pytest.raises(CallReverted, match="Multicall3: call failed") as info:
        client.eth_call(MULTICALL3_ADDRESS, encode_aggregate3(strict), block)
    assert info.value.target == MULTICALL3_ADDRESS

    # execute() goes through aggregate3: one probe plus one HTTP request for all calls.
    before = client.requests_sent
    calls = [Call(MULTICALL3_ADDRESS, d) for d in datas] + [
        Call(MULTICALL3_ADDRESS, bad, decode=uint, allow_failure=True)
    ]
    assert execute(client, calls, block) == [*individual, None]
    assert has_multicall3(client, block)
    first_run = client.requests_sent - before
    assert first_run <= 3  # getCode probe + aggregate3 batch + recheck of the bare failure
    before = client.requests_sent
    execute(client, calls[:-1], block)
    assert client.requests_sent - before == 1  # probe cached, no failures to recheck

    with pytest.raises(CallReverted, match=f"call to {MULTICALL3_ADDRESS}") as info:
        execute(client, [*calls[:-1], Call(MULTICALL3_ADDRESS, bad)], block)
    assert info.value.target == MULTICALL3_ADDRESS


def test_execute_falls_back_to_batches_without_multicall3(anvil: Anvil, client: RpcClient) -> None:
    feed = deploy_price_feed(client)
    fund_holders(client)
    block = client.pin_block()
    assert not has_multicall3(client, block)

    calls = [
        Call(feed, sel("latestAnswer()"), decode=lambda b: decode(["int256"], b)[0]),
        Call(feed, sel("decimals()"), decode=uint),
        Call(feed, sel("description()"), decode=lambda b: decode(["string"], b)[0]),
        Call(feed, sel("noSuchFunction()"), allow_failure=True),
        Call(HOLDERS[0], sel("decimals()"), decode=uint, allow_failure=True),  # no code: no data
    ] + [Call(feed, sel("latestRound()"), decode=uint) for _ in range(1200)]
    before = (client.requests_sent, client.calls_sent)
    via_batch = execute(client, calls, block)
    assert via_batch[:5] == [2_000 * 10**8, 8, via_batch[2], None, None]
    assert "devnet" in via_batch[2]
    assert via_batch[5:] == [1] * 1200
    # 1205 eth_calls in batches of 500: three HTTP requests (the getCode probe is cached).
    assert client.requests_sent - before[0] == 3
    assert client.calls_sent - before[1] == 1205

    with pytest.raises(CallReverted, match=f"call to {feed} \\(selector 0x"):
        execute(client, [Call(feed, sel("noSuchFunction()"))], block)

    install_multicall3(anvil.url)
    with RpcClient(anvil.url) as fresh:
        later = fresh.pin_block()
        assert has_multicall3(fresh, later)
        before = fresh.requests_sent
        assert execute(fresh, calls, later, chunk_size=500) == via_batch
        assert fresh.requests_sent - before <= 3


def test_execute_splits_chunks_a_provider_refuses(anvil: Anvil) -> None:
    install_multicall3(anvil.url)
    fund_holders(RpcClient(anvil.url))

    def gas_cap(req: dict[str, Any]) -> dict[str, Any] | None:
        """Refuse aggregate3 calls carrying more than 10 calls, as a 50M gas cap would."""
        if (
            req["method"] != "eth_call"
            or req["params"][0]["to"].lower() != MULTICALL3_ADDRESS.lower()
        ):
            return None
        calls = decode(["(address,bool,bytes)[]"], bytes.fromhex(req["params"][0]["data"][10:]))[0]
        if len(calls) > 10:
            return {"code": -32000, "message": "gas required exceeds allowance (50000000)"}
        return None

    with RefusingProviderDouble(anvil.url, gas_cap) as proxy, RpcClient(proxy.url) as client:
        block = client.pin_block()
        datas = [sel("getEthBalance(address)") + encode(["address"], [h]) for h in HOLDERS] * 5
        calls = [Call(MULTICALL3_ADDRESS, d, decode=uint) for d in datas]
        got = execute(client, calls, block, chunk_size=40)
        assert got == [client.get_balance(h, block) for h in HOLDERS] * 5
        assert proxy.refusals >= 3  # 40 -> 20 -> 10


# -- block pinning, chain id, errors ------------------------------------------------------------


def test_reads_pinned_to_an_older_block_return_the_older_state(
    anvil: Anvil, client: RpcClient
) -> None:
    install_multicall3(anvil.url)
    old = client.pin_block()
    receiver = HOLDERS[3]
    send_tx(client, receiver, value=10**18)
    new = client.pin_block()
    assert new.number == old.number + 1 and new.hash != old.hash
    assert client.pin_block(old.number) == old

    assert client.get_balance(receiver, old) == 0
    assert client.get_balance(receiver, new) == 10**18
    call = Call(
        MULTICALL3_ADDRESS, sel("getEthBalance(address)") + encode(["address"], [receiver]), uint
    )
    number = Call(MULTICALL3_ADDRESS, sel("getBlockNumber()"), uint)
    assert execute(client, [call, number], old) == [0, old.number]
    assert execute(client, [call, number], new) == [10**18, new.number]
    # The same pinning through the JSON-RPC batch path.
    assert execute(client, [call, number], old, use_multicall=False) == [0, old.number]
    assert execute(client, [call, number], new, use_multicall=False) == [10**18, new.number]


def test_pin_block_beyond_head_is_an_input_error(client: RpcClient) -> None:
    head = client.pin_block()
    with pytest.raises(InputError, match=f"beyond the chain head \\({head.number}\\)"):
        client.pin_block(head.number + 5)
    with pytest.raises(InputError):
        client.pin_block(-1)


def test_unknown_block_hash_is_an_rpc_error(client: RpcClient) -> None:
    ghost = BlockRef(number=0, hash="0x" + "11" * 32, timestamp=0)
    with pytest.raises(RpcError):
        client.eth_call(MULTICALL3_ADDRESS, sel("getBlockNumber()"), ghost)


def test_chain_id_mismatch_is_detected_on_first_use(anvil: Anvil) -> None:
    with RpcClient(anvil.url, expected_chain_id=1) as wrong:
        with pytest.raises(ChainMismatch, match=f"chain id {DEVNET_CHAIN_ID}, expected 1"):
            wrong.pin_block()
        assert wrong.requests_sent == 1  # only eth_chainId went out
    with RpcClient(anvil.url, expected_chain_id=DEVNET_CHAIN_ID) as right:
        assert right.pin_block().number == 0
        right.check_chain_id(DEVNET_CHAIN_ID)
        with pytest.raises(ChainMismatch):
            right.check_chain_id(10)
    assert issubclass(ChainMismatch, InputError)


def test_unreachable_endpoint_fails_fast_with_redacted_url() -> None:
    port = free_port()
    url = f"http://alice:hunter2@127.0.0.1:{port}/v2/SECRET-KEY?apikey=SECRET2"
    client = RpcClient(url, timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(RpcUnavailable) as info:
        client.pin_block()
    assert time.monotonic() - started < 3.0
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message and "did not answer" in message
    for secret in ("SECRET", "hunter2", "alice", "/v2"):
        assert secret not in message and secret not in repr(client)
    # No chained requests exception: its text would carry the full URL with the key.
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert client.requests_sent == 3  # first try + 2 retries
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://eth-mainnet.g.alchemy.com/v2/abcdef123", "https://eth-mainnet.g.alchemy.com"),
        ("https://mainnet.infura.io/v3/KEY?x=1#frag", "https://mainnet.infura.io"),
        ("https://user:pass@rpc.example.org:8545/path?key=v", "https://rpc.example.org:8545"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("http://[::1]:8545/secret", "http://[::1]:8545"),
        ("wss://node.example.com/ws/TOKEN", "wss://node.example.com"),
        ("not a url", "<RPC URL>"),
        ("http://host:notaport/x", "<unparseable RPC URL>"),
    ],
)
def test_redact_url_keeps_scheme_host_and_port_only(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_retries_5xx_then_succeeds(anvil: Anvil) -> None:
    failures = iter([503, 429])

    def flaky(req: dict[str, Any]) -> int | None:
        return next(failures, None)

    with RefusingProviderDouble(anvil.url, http_status=flaky) as proxy:
        client = RpcClient(proxy.url, backoff_s=0.01)
        assert client.chain_id() == DEVNET_CHAIN_ID
        assert client.requests_sent == 3 and client.calls_sent == 3


def test_batch_counts_one_request_and_keeps_order(client: RpcClient) -> None:
    fund_holders(client)
    before = (client.requests_sent, client.calls_sent)
    answers = client.batch([("eth_getBalance", [h, "latest"]) for h in reversed(HOLDERS)])
    assert [int(a, 16) for a in answers] == [(i + 1) * 10**18 + i for i in reversed(range(8))]
    assert client.requests_sent - before[0] == 1
    assert client.calls_sent - before[1] == len(HOLDERS)
    assert client.batch([]) == []
    with pytest.raises(RpcResponseError, match="eth_nonsense"):
        client.batch([("eth_chainId", []), ("eth_nonsense", [])])
    mixed = client.batch([("eth_chainId", []), ("eth_nonsense", [])], return_errors=True)
    assert mixed[0] == hex(DEVNET_CHAIN_ID) and isinstance(mixed[1], RpcResponseError)


# -- DevnetPriceFeed and logs -------------------------------------------------------------------


def test_devnet_price_feed_set_answer_and_round_data(client: RpcClient) -> None:
    feed = deploy_price_feed(client, answer=1_999 * 10**8, decimals=8)
    receipt = set_answer(client, feed, 2_345 * 10**8)
    block = client.pin_block()
    round_data = decode(
        ["uint80", "int256", "uint256", "uint256", "uint80"],
        client.eth_call(feed, sel("latestRoundData()"), block),
    )
    assert round_data == (2, 2_345 * 10**8, block.timestamp, block.timestamp, 2)
    values = execute(
        client,
        [
            Call(feed, sel("latestAnswer()"), lambda b: decode(["int256"], b)[0]),
            Call(feed, sel("latestTimestamp()"), uint),
            Call(feed, sel("latestRound()"), uint),
            Call(feed, sel("decimals()"), lambda b: decode(["uint8"], b)[0]),
            Call(feed, sel("description()"), lambda b: decode(["string"], b)[0]),
        ],
        block,
    )
    assert values[:4] == [2_345 * 10**8, block.timestamp, 2, 8]
    assert "devnet" in values[4].lower()

    (log,) = receipt["logs"]
    assert bytes.fromhex(log["topics"][0][2:]) == ANSWER_UPDATED
    assert decode(["int256"], bytes.fromhex(log["topics"][1][2:]))[0] == 2_345 * 10**8
    assert int(log["topics"][2], 16) == 2
    assert uint(bytes.fromhex(log["data"][2:])) == block.timestamp


def _emit_answers(client: RpcClient, feed: str, count: int) -> None:
    """setAnswer in `count` separate blocks, with empty blocks in between to spread them out."""
    for i in range(count):
        set_answer(client, feed, 3_000 + i)
        client.request("anvil_mine", [hex(1 + i % 3)])


def _rounds(pages: list[Any]) -> list[int]:
    return [int.from_bytes(log.topics[2], "big") for page in pages for log in page.logs]


def _assert_contiguous(pages: list[Any], start: int, end: int) -> None:
    assert pages[0].from_block == start and pages[-1].to_block == end
    for prev, nxt in itertools.pairwise(pages):
        assert nxt.from_block == prev.to_block + 1


def test_iter_logs_returns_every_answer_updated_once(client: RpcClient) -> None:
    feed = deploy_price_feed(client)
    _emit_answers(client, feed, 8)
    head = client.pin_block().number
    pages = list(
        iter_logs(
            client,
            address=feed,
            topics=[ANSWER_UPDATED],
            from_block=0,
            to_block=head,
            initial_span=2,
        )
    )
    _assert_contiguous(pages, 0, head)
    assert _rounds(pages) == list(range(1, 10))  # constructor round + 8 updates
    assert len(pages) > 1
    first = pages[0].logs[0] if pages[0].logs else next(p.logs[0] for p in pages if p.logs)
    assert first.address == feed.lower() and first.topics[0] == ANSWER_UPDATED
    assert first.transaction_hash.startswith("0x") and first.log_index == 0

    # A topic filter on the indexed roundId selects exactly one log.
    only_5 = list(
        iter_logs(
            client,
            address=[feed],
            topics=[ANSWER_UPDATED, None, (5).to_bytes(32, "big")],
            from_block=0,
            to_block=head,
        )
    )
    assert _rounds(only_5) == [5]


@pytest.mark.parametrize(
    "refusal",
    [
        {"code": -32005, "message": "query returned more than 10000 results"},
        {"code": -32602, "message": "eth_getLogs block range too large, range: 8, max: 3"},
        {"code": -32000, "message": "exceed maximum block range: 3"},
        413,
    ],
    ids=["code-32005", "code-32602-text", "code-32000-text", "http-413"],
)
def test_iter_logs_shrinks_span_for_a_refusing_provider(
    anvil: Anvil, refusal: dict[str, Any] | int
) -> None:
    limit = 3
    with RpcClient(anvil.url) as direct:
        feed = deploy_price_feed(direct)
        _emit_answers(direct, feed, 10)
        head = direct.pin_block().number

    def too_wide(req: dict[str, Any]) -> bool:
        if req["method"] != "eth_getLogs":
            return False
        flt = req["params"][0]
        return int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1 > limit

    def as_error(req: dict[str, Any]) -> dict[str, Any] | None:
        return refusal if isinstance(refusal, dict) and too_wide(req) else None

    def as_status(req: dict[str, Any]) -> int | None:
        return refusal if isinstance(refusal, int) and too_wide(req) else None

    with (
        RefusingProviderDouble(anvil.url, as_error, http_status=as_status) as proxy,
        RpcClient(proxy.url) as client,
    ):
        pages = list(
            iter_logs(
                client,
                address=feed,
                topics=[ANSWER_UPDATED],
                from_block=0,
                to_block=head,
                initial_span=64,
            )
        )
    assert proxy.refusals >= 4  # 64 -> 32 -> 16 -> 8 -> 4 -> 2
    assert all(p.to_block - p.from_block + 1 <= limit for p in pages)
    _assert_contiguous(pages, 0, head)
    assert _rounds(pages) == list(range(1, 12))


def test_iter_logs_gives_up_when_even_one_block_is_refused(anvil: Anvil) -> None:
    def always(req: dict[str, Any]) -> dict[str, Any] | None:
        if req["method"] == "eth_getLogs":
            return {"code": -32005, "message": "limit exceeded"}
        return None

    with (
        RefusingProviderDouble(anvil.url, always) as proxy,
        RpcClient(proxy.url) as client,
        pytest.raises(RpcError, match="single block 0"),
    ):
        list(iter_logs(client, address=MULTICALL3_ADDRESS, topics=[], from_block=0, to_block=4))


def test_iter_logs_does_not_shrink_on_unrelated_errors(anvil: Anvil) -> None:
    def broken(req: dict[str, Any]) -> dict[str, Any] | None:
        if req["method"] == "eth_getLogs":
            return {"code": -32000, "message": "header not found"}
        return None

    with (
        RefusingProviderDouble(anvil.url, broken) as proxy,
        RpcClient(proxy.url) as client,
        pytest.raises(RpcResponseError, match="header not found"),
    ):
        list(iter_logs(client, address=MULTICALL3_ADDRESS, topics=[], from_block=0, to_block=99))
    assert proxy.refusals == 1


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RpcResponseError("x", code=-32005, http_status=200), True),
        (RpcResponseError("eth_getLogs failed: Log response size exceeded.", code=-32602), True),
        (RpcResponseError("query returned more than 10000 results", code=-32000), True),
        (RpcResponseError("answered HTTP 413: too large", http_status=413), True),
        (RpcResponseError("rate limit exceeded", code=-32005, http_status=200), False),
        (RpcResponseError("answered HTTP 429 after 3 attempts", http_status=429), False),
        (RpcResponseError("header not found", code=-32000), False),
        (RpcUnavailable("did not answer"), False),
    ],
)
def test_is_range_refusal(exc: RpcError, expected: bool) -> None:
    assert is_range_refusal(exc) is expected


# -- a test double for providers that refuse some requests ---------------------------------------


class RefusingProviderDouble:
    """Test double for a picky RPC provider: an HTTP proxy on 127.0.0.1 that forwards to anvil
    but answers single requests with a JSON-RPC error (`error_for`) or an HTTP status
    (`http_status`) when the given rule says so. Batches are forwarded untouched unless every
    element is refused by `error_for` one by one.
    """

    def __init__(
        self,
        upstream: str,
        error_for: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        *,
        http_status: Callable[[dict[str, Any]], int | None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.error_for = error_for or (lambda req: None)
        self.http_status = http_status or (lambda req: None)
        self.refusals = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/secret-path"

    def __enter__(self) -> RefusingProviderDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _refused(self) -> None:
        with self._lock:
            self.refusals += 1

    def _answer(self, body: bytes) -> tuple[int, bytes]:
        payload = json.loads(body)
        items = payload if isinstance(payload, list) else [payload]
        for item in items:
            status = self.http_status(item)
            if status is not None:
                self._refused()
                return status, b'{"error": "refused by test double"}'
        if isinstance(payload, dict):
            error = self.error_for(payload)
            if error is not None:
                self._refused()
                return 200, json.dumps(
                    {"jsonrpc": "2.0", "id": payload["id"], "error": error}
                ).encode()
            return 200, requests.post(self.upstream, data=body, headers=_JSON, timeout=30).content
        # A batch: refuse elements one by one, forward the rest as one upstream batch.
        forward = [item for item in payload if self.error_for(item) is None]
        answers = requests.post(self.upstream, json=forward, timeout=30).json() if forward else []
        by_id = {a["id"]: a for a in answers}
        out = []
        for item in payload:
            error = self.error_for(item)
            if error is not None:
                self._refused()
                out.append({"jsonrpc": "2.0", "id": item["id"], "error": error})
            else:
                out.append(by_id[item["id"]])
        return 200, json.dumps(out).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = double._answer(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
