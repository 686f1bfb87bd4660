"""Feed histories are cached per chain read: the key is worked out once per client, the same for
two clients of the same endpoints, another for other endpoints, and never shows a URL."""

from __future__ import annotations

import gc
import weakref

from onchain.app.market_data import feed_history as fh
from onchain.rpc.client import RpcClient


def test_the_chain_key_is_per_endpoint_set_and_kept_per_client() -> None:
    one = RpcClient("http://127.0.0.1:1/v2/SECRETKEY123")
    same = RpcClient("http://127.0.0.1:1/v2/SECRETKEY123")
    other = RpcClient("http://127.0.0.1:2")
    key = fh._chain(one)
    assert fh._chain(same) == key != fh._chain(other)
    assert "SECRETKEY123" not in key and "127.0.0.1" not in key
    assert fh._CHAIN_OF[one] == key  # kept: the next lookup hashes nothing
    one.endpoints = other.endpoints  # never done by the app; shows the key is not recomputed
    assert fh._chain(one) == key
    gone = weakref.ref(same)
    del same
    gc.collect()
    assert gone() is None  # the cache keeps no client alive
