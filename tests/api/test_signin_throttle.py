"""The sign-in's limit on wrong tokens, on a clock the test moves: ten in any fifteen minutes
per client address, then the wait until the first of them is fifteen minutes old; the memory it
keeps stays bounded however many addresses guess."""

from __future__ import annotations

from starlette.requests import Request

from onchain.api.signin import MAX_WRONG, WRONG_WINDOW_S, WrongTokens, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ten_wrong_tokens_in_fifteen_minutes_then_a_wait_until_the_first_is_that_old() -> None:
    assert (MAX_WRONG, WRONG_WINDOW_S) == (10, 900)  # the README's figures
    clock = Clock()
    wrong = WrongTokens(clock=clock)
    for _ in range(9):
        assert wrong.retry_after_s("a") == 0
        assert not wrong.wrong("a")
        clock.now += 10
    assert wrong.retry_after_s("a") == 0
    assert wrong.wrong("a")  # the tenth, at 1090: the last one allowed
    assert wrong.retry_after_s("a") == 1000 + 900 - 1090
    assert wrong.retry_after_s("b") == 0  # other addresses have their own allowance
    clock.now = 1000 + 900 - 0.5
    assert wrong.retry_after_s("a") == 1  # whole seconds, never 0 while held back
    clock.now = 1000 + 900  # the first is 900 s old: one more try
    assert wrong.retry_after_s("a") == 0
    assert wrong.wrong("a")  # ten again within the window
    assert wrong.retry_after_s("a") == 10  # the second (at 1010) leaves it in 10 s
    clock.now += WRONG_WINDOW_S
    assert wrong.retry_after_s("a") == 0
    assert len(wrong) == 0  # nothing left to remember


def test_the_addresses_remembered_are_bounded_the_quietest_going_first() -> None:
    clock = Clock()
    wrong = WrongTokens(limit=3, max_clients=100, clock=clock)
    for _ in range(3):
        wrong.wrong("held")
    assert wrong.retry_after_s("held") > 0
    for i in range(98):
        wrong.wrong(f"other-{i}")
    wrong.wrong("held-too")
    assert len(wrong) == 100
    wrong.wrong("other-0")  # counted again: now the latest
    wrong.wrong("new")  # full: "held" has the oldest last wrong token and goes
    assert len(wrong) == 100
    assert wrong.retry_after_s("held") == 0
    assert wrong.retry_after_s("other-0") == 0 and wrong.retry_after_s("held-too") == 0
    wrong.wrong("other-0")
    assert wrong.retry_after_s("other-0") > 0  # its two earlier ones were kept
    for i in range(10_000):
        wrong.wrong(f"many-{i}")
    assert len(wrong) == 100


def request_from(host: str) -> Request:
    return Request({"type": "http", "method": "GET", "headers": [], "client": (host, 50000)})


def test_addresses_count_as_one_ipv4_host_or_one_ipv6_slash_64() -> None:
    assert client_key(request_from("203.0.113.7")) == "203.0.113.7"
    assert client_key(request_from("::ffff:203.0.113.7")) == "203.0.113.7"
    one = client_key(request_from("2001:db8:1:2::1"))
    assert one == "2001:db8:1:2::/64"
    assert client_key(request_from("2001:db8:1:2:ffff:ffff:ffff:ffff")) == one
    assert client_key(request_from("2001:db8:1:3::1")) != one
