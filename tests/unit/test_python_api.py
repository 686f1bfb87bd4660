"""`import onchain` stays light and names its API; what is not a web3 object, or a provider that
cannot reach its node, is one clear error (never the provider's URL)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from web3 import HTTPProvider, Web3

import onchain
from onchain.errors import InputError, RpcUnavailable


def test_import_onchain_is_light_and_names_its_api() -> None:
    probe = (
        "import sys, onchain; "
        "print([m for m in ('numpy', 'web3', 'requests', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in onchain.__all__:
        assert getattr(onchain, name) is not None


def test_an_object_that_is_no_web3_is_one_clear_error() -> None:
    with pytest.raises(InputError, match=r"expected a web3\.Web3"):
        onchain.connect(object())


@pytest.mark.slow  # our retries with backoff: ~9 s
def test_a_provider_that_cannot_reach_its_node_is_one_clear_error_without_its_url() -> None:
    dead = HTTPProvider("http://127.0.0.1:9/secret-key", exception_retry_configuration=None)
    with pytest.raises(RpcUnavailable) as caught:
        onchain.read_market(Web3(dead), "0x" + "11" * 20)
    message = str(caught.value)
    assert "did not answer" in message and "ConnectionError" in message
    assert "secret-key" not in message and "127.0.0.1:9" not in message
