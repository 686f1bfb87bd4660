"""/metrics of a real `onchain serve` shows each RPC endpoint (requests, errors by kind, latency,
up) as the last refresh run recorded it, with the URL's key never in a label, and each alert
channel's deliveries (delivered, failed, pending, age of the oldest pending) from the outbox.
The endpoints were used for real (a fault-injecting proxy in front of anvil); the alerts were
queued with a snapshot and delivered to real receivers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from onchain.alerts.delivery import deliver_all
from onchain.config import load_config
from onchain.devnet.anvil import Anvil, free_port
from onchain.rpc.client import RpcClient
from onchain.rpc.endpoints import EndpointSet, redact_url
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.alert_receiver import Receiver
from tests.helpers.alerts_support import alerts_config, webhook, write_block
from tests.helpers.fault_proxy import SECRET as URL_KEY
from tests.helpers.fault_proxy import FaultProxy, Faults

ONCHAIN = [str(Path(sys.executable).with_name("onchain"))]
SECRET = "metrics-test-secret"


def scrape(db_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Start `onchain serve` on the store, scrape /metrics once (parsed by prometheus_client)."""
    port = free_port()
    proc = subprocess.Popen(
        [*ONCHAIN, "serve", "--db", db_url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "onchain serve did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert reply.status_code == 200
    assert URL_KEY not in reply.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(reply.text)
        for s in f.samples
    }


def test_metrics_show_rpc_endpoints_and_alert_channels(
    store: Store,
    db_url: str,
    anvil: Anvil,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults = Faults(error_rate=0.2, http_rate=0.15, seed=5, skip_methods=frozenset({"eth_chainId"}))
    with FaultProxy(anvil.url, faults) as proxy:
        endpoints = EndpointSet.of([proxy.url, anvil.url])
        client = RpcClient(endpoints, backoff_s=0.0, expected_chain_id=31337)
        for _ in range(40):
            client.block_number()
        client.close()
    health = endpoints.health()
    run = crud.start_run(store, "refresh")
    crud.finish_run(store, run, "ok", {"rpc_endpoints": {"devnet": health}})  # as the daemon does

    monkeypatch.setenv("ONCHAIN_TEST_SECRET", SECRET)
    with Receiver(SECRET) as good, Receiver(SECRET, status=500) as down:
        path = alerts_config(
            tmp_path,
            webhook("good", good.url)
            + webhook("down", down.url)
            + "[alerts.delivery]\nretry_base_s = 0\nmax_attempts = 2\n",
        )
        cfg = load_config(path)
        assert write_block(store, cfg, 1, [1.04, 1.08]) == 2
        deliver_all(store, cfg.alerts)
        deliver_all(store, cfg.alerts)  # "down": the first alert fails for good, the second waits

    samples = scrape(db_url)
    proxied = ("chain", "devnet"), ("endpoint", redact_url(proxy.url))
    assert URL_KEY in proxy.url and URL_KEY not in redact_url(proxy.url)
    mine = health[0]
    assert mine["endpoint"] == redact_url(proxy.url) and mine["errors"] > 0
    assert samples[("onchain_rpc_requests_total", proxied)] == mine["requests"]
    errors = {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "onchain_rpc_errors_total" and dict(labels)["endpoint"] == mine["endpoint"]
    }
    assert errors == {k: float(v) for k, v in mine["errors_by_kind"].items()}
    assert sum(errors.values()) == mine["errors"] and "transient" in errors
    count = samples[("onchain_rpc_request_duration_seconds_count", proxied)]
    assert count == mine["latency_s"]["count"] >= mine["requests"] > 0
    assert samples[("onchain_rpc_request_duration_seconds_bucket", (*proxied, ("le", "+Inf")))] == (
        count
    )
    assert samples[("onchain_rpc_endpoint_up", proxied)] in (0.0, 1.0)
    direct = ("chain", "devnet"), ("endpoint", redact_url(anvil.url))
    assert samples[("onchain_rpc_endpoint_up", direct)] == 1.0

    def deliveries(channel: str, state: str) -> float:
        key = ("onchain_alert_deliveries_total", (("channel", channel), ("state", state)))
        return samples[key]

    assert (deliveries("good", "delivered"), deliveries("good", "pending")) == (2, 0)
    assert deliveries("down", "failed") == 1 and deliveries("down", "pending") == 1
    assert deliveries("down", "delivered") == 0 and len(down.requests) == 2
    age = samples[("onchain_alert_oldest_pending_age_seconds", (("channel", "down"),))]
    assert 0 <= age < 600
    assert ("onchain_alert_oldest_pending_age_seconds", (("channel", "good"),)) not in samples
