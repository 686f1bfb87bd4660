"""The real CLI against endpoints that fail the way hosted providers do (tests/fault_proxy.py in
front of the 300-borrower devnet): every run either prints exactly what the clean run prints,
or one clear line and exit 2 when nothing could be answered. No run ever prints a secret from
an endpoint URL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onchain.devnet.anvil import free_port
from onchain.devnet.build import DevnetInfo
from tests.helpers.cli_support import assert_one_clear_error, run
from tests.helpers.fault_proxy import SECRET, FaultProxy, Faults

WALLET_INDEX = 5


@pytest.fixture(scope="module")
def clean(devnet: DevnetInfo) -> dict[str, str]:
    """What scan and watch print against the devnet itself."""
    scan = run(
        "scan", "--rpc", devnet.rpc_url, "--market", devnet.aave.addresses_provider, "--json"
    )
    assert scan.returncode == 0, scan.stderr
    watch = run(*_watch_args(devnet), "--rpc", devnet.rpc_url)
    assert watch.returncode == 0, watch.stderr
    assert json.loads(watch.stdout), "the watched wallet has a position"
    return {"scan": scan.stdout, "watch": watch.stdout}


def _watch_args(devnet: DevnetInfo) -> list[str]:
    wallet = devnet.borrowers[WALLET_INDEX]
    return ["watch", wallet, "--market", devnet.aave.addresses_provider, "--json"]


def scan(
    devnet: DevnetInfo, *urls: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    rpc = [a for u in urls for a in ("--rpc", u)]
    return run("scan", *rpc, "--market", devnet.aave.addresses_provider, "--json", *extra)


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    for text in (result.stdout, result.stderr):
        assert SECRET not in text and "/v3/" not in text


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v3/{SECRET}"


@pytest.fixture
def proxies(devnet: DevnetInfo) -> Iterator[list[FaultProxy]]:
    """Start proxies with `started.append(FaultProxy(...).__enter__())`; all stop at the end."""
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        proxy.__exit__(None, None, None)


def start(devnet: DevnetInfo, proxies: list[FaultProxy], faults: Faults) -> FaultProxy:
    proxy = FaultProxy(devnet.rpc_url, faults).__enter__()
    proxies.append(proxy)
    return proxy


# -- transient faults on one endpoint: same answers --------------------------------------------


def test_error_objects_on_30_percent_of_requests_and_batch_items(
    devnet: DevnetInfo, clean: dict[str, str], proxies: list[FaultProxy]
) -> None:
    proxy = start(devnet, proxies, Faults(error_rate=0.3, item_error_rate=0.3, seed=11))
    result = scan(devnet, proxy.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == clean["scan"]
    assert proxy.injected >= 3, "the proxy did inject faults"
    # The degraded endpoint is named once, with its last cause, and without its key.
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and proxy.url.split("/v3")[0] in lines[0], result.stderr
    assert_no_secret(result)

    watch = run(*_watch_args(devnet), "--rpc", proxy.url)
    assert watch.returncode == 0, watch.stderr
    assert watch.stdout == clean["watch"]


def test_http_429_5xx_resets_and_stalls(
    devnet: DevnetInfo, clean: dict[str, str], proxies: list[FaultProxy]
) -> None:
    proxy = start(
        devnet,
        proxies,
        Faults(http_rate=0.2, reset_rate=0.15, stall_rate=0.1, stall_s=2.5, seed=5),
    )
    result = scan(devnet, proxy.url, extra=("--timeout", "1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == clean["scan"]
    assert proxy.injected >= 3
    assert_no_secret(result)


# -- several endpoints --------------------------------------------------------------------------


def test_first_of_two_endpoints_dead(devnet: DevnetInfo, clean: dict[str, str]) -> None:
    dead = dead_url()
    result = scan(devnet, dead, devnet.rpc_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == clean["scan"]
    assert dead.split("/v3")[0] in result.stderr and "connection refused" in result.stderr
    assert_no_secret(result)


def test_first_of_two_endpoints_on_the_wrong_chain(
    devnet: DevnetInfo, clean: dict[str, str], proxies: list[FaultProxy]
) -> None:
    wrong = start(devnet, proxies, Faults(chain_id=1))
    chain = ("--chain-id", str(devnet.chain_id))
    result = scan(devnet, wrong.url, devnet.rpc_url, extra=chain)
    assert result.returncode == 0, result.stderr
    assert result.stdout == clean["scan"]
    assert "serves chain id 1, expected" in result.stderr
    assert wrong.requests == 1, "only eth_chainId went to the wrong chain"
    # Every endpoint on the wrong chain: nothing can be answered.
    other = start(devnet, proxies, Faults(chain_id=10))
    result = scan(devnet, wrong.url, other.url, extra=chain)
    assert_one_clear_error(result, "chain id")
    assert_no_secret(result)


def test_a_lagging_endpoint_never_answers_for_a_block_it_does_not_know(
    devnet: DevnetInfo, clean: dict[str, str], proxies: list[FaultProxy]
) -> None:
    """The preferred endpoint lags 3 blocks behind: it does not know the pinned block (and its
    logs would stop short); the fallback drops 30% of requests and batch items. Every answer
    about the block comes from the fallback, and the output is the clean one."""
    head = ("--block", str(clean_head(devnet)))
    lagging = start(devnet, proxies, Faults(lag_blocks=3))
    flaky = start(devnet, proxies, Faults(error_rate=0.3, item_error_rate=0.3, seed=2))
    result = scan(devnet, lagging.url, flaky.url, extra=head)
    assert result.returncode == 0, result.stderr
    assert result.stdout == clean["scan"]
    assert lagging.lag_answers >= 2, "the lagging endpoint was asked about the pinned block"
    watch = run(*_watch_args(devnet), "--rpc", lagging.url, "--rpc", flaky.url, *head)
    assert watch.returncode == 0, watch.stderr
    assert watch.stdout == clean["watch"]
    # Only the lagging endpoint: the block it does not know is a clear failure, not old data.
    result = scan(devnet, lagging.url, extra=head)
    assert_one_clear_error(result, "beyond the chain head")


def test_an_endpoint_on_another_fork_is_never_mixed_in(
    devnet: DevnetInfo, clean: dict[str, str], proxies: list[FaultProxy]
) -> None:
    """The fallback has other blocks at the last two heights (same numbers, other hashes): the
    preferred endpoint drops 30% of requests, so the fallback is asked, but nothing it says
    about those heights is used."""
    head = ("--block", str(clean_head(devnet)))
    flaky = start(devnet, proxies, Faults(error_rate=0.3, item_error_rate=0.3, seed=21))
    fork = start(devnet, proxies, Faults(fork_blocks=2))
    result = scan(devnet, flaky.url, fork.url, extra=head)
    assert result.returncode == 0, result.stderr
    assert result.stdout == clean["scan"]
    assert fork.fork_answers >= 1, "the fork was asked about the pinned block"


def clean_head(devnet: DevnetInfo) -> int:
    from onchain.rpc import RpcClient

    with RpcClient(devnet.rpc_url) as client:
        return client.block_number()


# -- nothing answers: one clear line, exit 2 ----------------------------------------------------


def test_nothing_answers_is_one_clear_line(devnet: DevnetInfo, proxies: list[FaultProxy]) -> None:
    first, second = dead_url(), dead_url()
    result = scan(devnet, first, second)
    assert_one_clear_error(result, first.split("/v3")[0], second.split("/v3")[0], "refused")
    assert_no_secret(result)

    always = start(devnet, proxies, Faults(error_rate=1.0))
    started = time.monotonic()
    result = scan(devnet, always.url)
    assert_one_clear_error(result, "attempts", always.url.split("/v3")[0])
    assert time.monotonic() - started < 30, "retries are bounded"
    assert_no_secret(result)


def test_a_401_that_echoes_the_key_never_shows_it(
    devnet: DevnetInfo, clean: dict[str, str], proxies: list[FaultProxy]
) -> None:
    refused = start(devnet, proxies, Faults(unauthorized=True))
    result = scan(devnet, refused.url)
    assert_one_clear_error(result, "HTTP 401")
    assert_no_secret(result)
    # With a fallback, the 401 endpoint is set aside and named, the fallback answers.
    result = scan(devnet, refused.url, devnet.rpc_url)
    assert result.returncode == 0 and result.stdout == clean["scan"]
    assert "HTTP 401" in result.stderr
    assert_no_secret(result)


def test_a_key_in_the_host_name_is_never_printed() -> None:
    from onchain.rpc import redact_url
    from onchain.rpc.endpoints import Endpoint

    url = "https://black-sparkling-3f9a7c1e5b2d.quiknode.pro/0123456789abcdef0123/"
    assert redact_url(url) == "https://***.quiknode.pro"
    endpoint = Endpoint(url)
    echoed = "invalid key 0123456789abcdef0123 for black-sparkling-3f9a7c1e5b2d"
    assert "0123456789abcdef0123" not in endpoint.scrub(echoed)
    assert "3f9a7c1e5b2d" not in endpoint.scrub(echoed)


# -- the config: several endpoints and a request budget -----------------------------------------


def write_config(path: Path, devnet: DevnetInfo, chain_lines: str) -> Path:
    path.write_text(
        f"[chains.devnet]\nchain_id = {devnet.chain_id}\n{chain_lines}\n"
        f'[[markets]]\nname = "aave"\nprotocol = "aave-v3"\nchain = "devnet"\n'
        f'address = "{devnet.aave.addresses_provider}"\n\n'
        f'[store]\npath = "{path.with_suffix(".sqlite")}"\n'
        "[jobs.prune]\nenabled = false\n[jobs.assess]\nenabled = false\n"
    )
    return path


def test_config_endpoints_in_order_with_a_budget(
    devnet: DevnetInfo, clean: dict[str, str], proxies: list[FaultProxy], tmp_path: Path
) -> None:
    proxy = start(devnet, proxies, Faults(item_error_rate=0.3, seed=4))
    config = write_config(
        tmp_path / "c.toml",
        devnet,
        f'rpc_url_envs = ["ONCHAIN_TEST_UNSET", "ONCHAIN_TEST_RPC"]\nrpc_urls = ["{dead_url()}"]\n'
        "rpc_max_batch = 3\nrpc_max_rps = 40\n",
    )
    env = {**os.environ, "ONCHAIN_TEST_RPC": proxy.url}
    env.pop("ONCHAIN_RPC_URL", None)
    started = time.monotonic()
    result = run("scan", "--config", str(config), "--market", "aave", "--json", env=env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    # the same positions as the fault-free read; through a config, each names its chain and market
    named = json.loads(result.stdout)
    assert {(p.pop("chain"), p.pop("market_name")) for p in named} == {("devnet", "aave")}
    assert named == [
        {k: v for k, v in p.items() if k not in ("chain", "market_name")}
        for p in json.loads(clean["scan"])
    ]
    assert proxy.max_batch == 3, "no batch carries more calls than the budget allows"
    assert proxy.requests <= 40 * elapsed, "requests per second stay within the budget"
    bad = write_config(tmp_path / "bad.toml", devnet, "rpc_urls = 'x'\n")
    assert_one_clear_error(run("scan", "--config", str(bad), "--market", "aave"), "rpc_urls")


# -- the daemon ---------------------------------------------------------------------------------


def test_daemon_records_a_failed_refresh_then_resumes_and_shows_endpoint_health(
    devnet: DevnetInfo, proxies: list[FaultProxy], tmp_path: Path
) -> None:
    dead = dead_url()
    config = write_config(tmp_path / "d.toml", devnet, f'rpc_urls = ["{dead}"]\n')
    db = tmp_path / "d.sqlite"
    assert run("db", "upgrade", "--config", str(config)).returncode == 0
    once = run("run", "--config", str(config), "--once")  # nothing answers: refused up front
    assert once.returncode == 2 and "refused" in once.stderr
    assert SECRET not in once.stderr
    # An endpoint that answers eth_chainId and then fails every read: the runs fail, recorded.
    broken = start(devnet, proxies, Faults(error_rate=1.0, skip_methods=frozenset({"eth_chainId"})))
    write_config(config, devnet, f'rpc_urls = ["{broken.url}"]\n')
    once = run("run", "--config", str(config), "--once")
    assert once.returncode == 1, once.stderr
    assert SECRET not in once.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from position_snapshots").fetchone() == (0,)
        assert conn.execute("select count(*) from market_snapshots").fetchone() == (0,)
        errors = conn.execute("select job, error from job_runs where outcome = 'error'").fetchall()
    assert {job for job, _ in errors} == {"discover", "refresh"}
    for _, error in errors:  # the reason: the endpoint (no key) and its last cause
        assert broken.url.split("/v3")[0] in error and SECRET not in error

    flaky = start(devnet, proxies, Faults(error_rate=0.3, item_error_rate=0.3, seed=9))
    write_config(config, devnet, f'rpc_urls = ["{dead}", "{flaky.url}"]\n')
    once = run("run", "--config", str(config), "--once")
    assert once.returncode == 0, once.stderr
    with sqlite3.connect(db) as conn:
        (snapshots,) = conn.execute("select count(*) from market_snapshots").fetchone()
        (positions,) = conn.execute("select count(*) from position_snapshots").fetchone()
    assert snapshots == 1 and positions >= 300

    status = run("status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert SECRET not in status.stdout
    health = {e["endpoint"]: e for e in json.loads(status.stdout)["endpoints"]}
    dead_safe, flaky_safe = dead.split("/v3")[0], flaky.url.split("/v3")[0]
    assert set(health) == {dead_safe, flaky_safe}
    assert health[dead_safe]["errors"] >= 1 and "refused" in health[dead_safe]["last_error"]
    assert health[dead_safe]["set_aside_until"] is not None
    assert health[flaky_safe]["requests"] > health[flaky_safe]["errors"] >= 1
    human = run("status", "--config", str(config))
    assert human.returncode == 0 and "RPC endpoints" in human.stdout
    assert flaky_safe in human.stdout and SECRET not in human.stdout


# -- the client itself: only failed items are asked again ---------------------------------------


def test_a_batch_asks_again_only_its_failed_items(
    devnet: DevnetInfo, proxies: list[FaultProxy]
) -> None:
    from onchain.rpc import RpcClient

    proxy = start(devnet, proxies, Faults(item_error_rate=0.3, seed=8))
    accounts = devnet.borrowers[:200]
    with RpcClient(devnet.rpc_url) as direct:
        block = direct.pin_block()
        truth = direct.batch([("eth_getBalance", [a, {"blockHash": block.hash}]) for a in accounts])
    with RpcClient(proxy.url, backoff_s=0.01) as client:
        got = client.batch([("eth_getBalance", [a, {"blockHash": block.hash}]) for a in accounts])
    assert got == truth
    assert proxy.injected >= 30
    # Every call once, plus exactly one more for each item the proxy failed.
    assert client.calls_sent == len(accounts) + proxy.injected


def test_aggregate3_asks_again_only_the_chunks_a_provider_failed(
    devnet: DevnetInfo, proxies: list[FaultProxy]
) -> None:
    from eth_abi import encode
    from eth_utils import function_signature_to_4byte_selector

    from onchain.rpc import MULTICALL3_ADDRESS, Call, RpcClient, execute

    proxy = start(devnet, proxies, Faults(item_error_rate=0.3, seed=12))
    selector = function_signature_to_4byte_selector("getEthBalance(address)")

    def uint(data: bytes) -> int:
        return int.from_bytes(data, "big")

    calls = [
        Call(MULTICALL3_ADDRESS, selector + encode(["address"], [a]), uint)
        for a in devnet.borrowers * 4
    ]
    with RpcClient(devnet.rpc_url) as direct:
        block = direct.pin_block()
        truth = execute(direct, calls, block, chunk_size=60, use_multicall=True)
    with RpcClient(proxy.url, backoff_s=0.01) as client:
        got = execute(client, calls, block, chunk_size=60, use_multicall=True)
    assert got == truth
    assert proxy.injected >= 3
    chunks = -(-len(calls) // 60)
    assert client.calls_sent == chunks + proxy.injected
