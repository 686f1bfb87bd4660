"""Alerts without a chain: the rule machine (hysteresis, cooldown, escalation, recovery,
liquidated/repaid once), real channels on 127.0.0.1 (our signed webhook checked by a receiver,
Apprise json:// and form:// to a local HTTP server, email through a real SMTP server), the
outbox written in the snapshot's transaction, retries with backoff that record every attempt,
one failing channel not holding back another, `onchain alerts test|list`, and bad config as
one clear line before anything is sent."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from onchain.alerts import outbox
from onchain.alerts.channels import canonical_body, send, sign
from onchain.alerts.config import RuleConfig
from onchain.alerts.delivery import deliver_all
from onchain.alerts.outbox import BlockAlerts, record_block
from onchain.alerts.rules import Observation, RuleState, step
from onchain.jobs.assess import assess
from onchain.store import crud
from onchain.store.db import Store
from tests.helpers.alert_receiver import Mailbox, Receiver
from tests.helpers.cli_support import assert_one_clear_error
from tests.helpers.cli_support import run as run_cli
from tests.helpers.store_rows import MARKET, account, block, market_snapshot, position

WAD = 10**18
SECRET = "s3cret-for-tests"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def hf(x: float) -> int:
    return round(x * 10_000) * 10**14


def obs(h: float | None, tier: str = "HIGH", debt: int = 100, coll: int = 200) -> Observation:
    wad = None if h is None else hf(h)
    debts = {"DAI": debt} if h else {}
    return Observation(
        wad, wad is not None and wad < WAD, tier, debts, {"WETH": coll} if coll else {}
    )


def run_rule(rule: RuleConfig, steps: list[Observation], gap_s: float = 12) -> list[str | None]:
    state, kinds = RuleState(), []
    for i, o in enumerate(steps):
        kind, state = step(rule, state, o, T0 + timedelta(seconds=i * gap_s))
        kinds.append(kind)
    return kinds


# -- the rule machine -------------------------------------------------------------------------


def test_hysteresis_fires_below_and_rearms_only_above_the_higher_level() -> None:
    rule = RuleConfig("r", from_tier=None, below_hf_wad=hf(1.10), rearm_hf_wad=hf(1.15),
                      cooldown_s=0)  # fmt: skip
    wobble = [1.2] + [1.09, 1.11, 1.095, 1.14, 1.099, 1.149, 1.09] * 8
    kinds = run_rule(rule, [obs(h, "WATCH") for h in wobble])
    assert [k for k in kinds if k] == ["enter"], "a wobble around 1.10 must not storm"
    kinds = run_rule(rule, [obs(h, "WATCH") for h in (1.2, 1.09, 1.16, 1.12, 1.09)])
    assert kinds == [None, "enter", "recover", None, "enter"]


def test_escalation_fires_at_once_and_cooldown_delays_a_new_episode() -> None:
    rule = RuleConfig("r", from_tier="HIGH", cooldown_s=100)
    seq = [
        obs(1.3, "SAFE"),
        obs(1.08, "HIGH"),  # enter
        obs(1.04, "CRITICAL"),  # escalate, whatever the cooldown
        obs(1.06, "HIGH"),  # better, still in danger: silent
        obs(0.99, "LIQUIDATABLE"),  # escalate
        obs(1.2, "SAFE"),  # above 1.08 + 0.05: recover
        obs(1.08, "HIGH"),  # 12 s after the recovery: cooldown holds it back
    ]
    assert run_rule(rule, seq) == [None, "enter", "escalate", None, "escalate", "recover", None]
    later = run_rule(rule, [*seq, obs(1.08, "HIGH")], gap_s=60)  # 60 s apart: past the cooldown
    assert later[-2:] == [None, "enter"]


def test_liquidated_and_repaid_are_reported_once() -> None:
    rule = RuleConfig("r", from_tier="CRITICAL", cooldown_s=0)
    seq = [
        obs(0.98, "LIQUIDATABLE", debt=100, coll=200),  # enter
        obs(1.02, "CRITICAL", debt=60, coll=150),  # partial liquidation
        obs(1.02, "CRITICAL", debt=60, coll=150),
        obs(None, "SAFE", coll=0),  # gone: liquidated
        obs(None, "SAFE", coll=0),
    ]
    assert run_rule(rule, seq) == ["enter", "liquidated", None, "liquidated", None]
    repaid = [obs(1.03, "CRITICAL"), obs(None, "SAFE", coll=200), obs(None, "SAFE", coll=200)]
    assert run_rule(rule, repaid) == ["enter", "repaid", None]


# -- channels, against real servers on 127.0.0.1 ------------------------------------------------


def channel(name: str, url: str, secret: str | None = SECRET) -> Any:
    from onchain.alerts.config import ChannelConfig, Secret

    kind = "webhook" if url.startswith("http") else "apprise"
    return ChannelConfig(name, kind, Secret(url), None if secret is None else Secret(secret))


def test_signed_webhook_carries_the_contract_and_a_receiver_can_verify_it() -> None:
    payload = {"id": "abc", "kind": "test", "text": "héllo"}
    with Receiver(SECRET) as r:
        result = send(channel("hook", r.url), payload)
        bad = send(channel("hook", r.url, "wrong-secret"), payload)
    assert result.ok and result.status == 200
    assert not bad.ok and bad.status == 401 and bad.error == "HTTP 401"
    first = r.requests[0]
    assert first.signed is True and first.json == payload
    assert first.headers["content-type"] == "application/json"
    ts = first.headers["x-onchain-timestamp"]
    assert first.headers["x-onchain-signature"] == sign(SECRET, ts, canonical_body(payload))
    assert first.headers["x-onchain-alert-id"] == "abc"


def test_apprise_json_and_form_reach_a_local_http_server() -> None:
    payload = {"id": "x1", "kind": "enter", "text": "AT RISK HIGH: 0xabc\nBlock 7."}
    with Receiver() as r:
        assert send(channel("j", f"json://127.0.0.1:{r.port}/j", None), payload).ok
        assert send(channel("f", f"form://127.0.0.1:{r.port}/f", None), payload).ok
        r.status = 503
        failed = send(channel("j", f"json://127.0.0.1:{r.port}/j", None), payload)
    assert not failed.ok and "json" in (failed.error or "")
    j, f = r.requests[:2]
    assert j.path == "/j" and j.json["message"] == payload["text"]
    assert j.json["title"] == "AT RISK HIGH: 0xabc"
    assert f.path == "/f" and b"Block+7." in f.body


def test_email_through_a_real_smtp_server() -> None:
    payload = {"id": "m1", "kind": "enter", "text": "AT RISK CRITICAL: 0xabc\nHF 1.0400"}
    with Mailbox() as box:
        url = f"mailto://127.0.0.1:{box.port}?to=bob@example.com&from=onchain@example.com"
        assert send(channel("mail", url + "&mode=insecure", None), payload).ok
    (message,) = box.messages
    assert message["To"] == "bob@example.com" and message["Subject"] == "AT RISK CRITICAL: 0xabc"
    bodies = [p.get_payload(decode=True) for p in message.walk() if not p.is_multipart()]
    assert any(b"HF 1.0400" in b for b in bodies)


# -- the outbox and the delivery job ---------------------------------------------------------


def alerts_config(tmp_path: Path, channels: str, rules: str = "") -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[chains.devnet]\nchain_id = 31337\nrpc_url = "http://127.0.0.1:1"\n\n'
        f'[[markets]]\nname = "m"\nprotocol = "aave-v3"\nchain = "devnet"\naddress = "{MARKET}"\n\n'
        f'[store]\npath = "alerts.sqlite"\n\n{rules or DEFAULT_RULES}\n{channels}'
    )
    return path


DEFAULT_RULES = '[[alerts.rules]]\nname = "any"\nfrom_tier = "HIGH"\ncooldown_s = 0\n'


def webhook(name: str, url: str, secret_env: str = "ONCHAIN_TEST_SECRET") -> str:
    return f'[[alerts.channels]]\nname = "{name}"\nurl = "{url}"\nsecret_env = "{secret_env}"\n'


def write_block(store: Store, cfg: Any, n: int, hfs: list[float | None]) -> int:
    """One block of positions with these health factors, alerts in its transaction."""
    market = crud.sync_markets(store, cfg)[0]
    blk = block(n)
    positions = [position(i, blk, None if h is None else hf(h)) for i, h in enumerate(hfs)]
    assessed = assess(positions, cfg.tiers)
    queued = []
    hook = BlockAlerts(cfg.alerts, cfg.path, market, blk, positions, assessed)
    crud.write_snapshot(store, market, blk, positions, assessed, market_snapshot(), None,
                        lambda conn: queued.append(record_block(conn, hook)))  # fmt: skip
    return queued[0]


def table_count(store: Store, table: Any) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_outbox_is_written_with_its_snapshot_or_not_at_all(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onchain.config import load_config

    monkeypatch.setenv("ONCHAIN_TEST_SECRET", SECRET)
    cfg = load_config(alerts_config(tmp_path, webhook("hook", "http://127.0.0.1:9/x")))
    market = crud.sync_markets(store, cfg)[0]
    blk = block(5)
    positions = [position(0, blk, hf(1.04))]

    def boom(conn: Any) -> None:
        record_block(conn, BlockAlerts(cfg.alerts, cfg.path, market, blk, positions,
                                       assess(positions, cfg.tiers)))  # fmt: skip
        raise RuntimeError("crash after the alert, before the commit")

    with pytest.raises(RuntimeError):
        crud.write_snapshot(store, market, blk, positions, assess(positions, cfg.tiers), None,
                            None, boom)  # fmt: skip
    assert (
        table_count(store, outbox.T_OUTBOX) == 0 and crud.snapshot_hash(store, market.id, 5) is None
    )
    assert write_block(store, cfg, 5, [1.04]) == 1
    assert table_count(store, outbox.T_OUTBOX) == 1 and table_count(store, outbox.T_DELIVERIES) == 1
    assert write_block(store, cfg, 6, [1.03]) == 0  # same episode, same tier: nothing new


def test_retries_with_backoff_record_every_attempt_and_a_dead_channel_holds_back_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onchain.config import load_config

    monkeypatch.setenv("ONCHAIN_TEST_SECRET", SECRET)
    with Receiver(SECRET) as good, Receiver(SECRET, status=500) as flaky:
        path = alerts_config(
            tmp_path,
            webhook("good", good.url) + webhook("flaky", flaky.url)
            + '[alerts.delivery]\nretry_base_s = 0\nmax_attempts = 3\n',
        )  # fmt: skip
        cfg = load_config(path)
        assert write_block(store, cfg, 1, [1.04, 1.08, 1.3]) == 2  # CRITICAL, HIGH; SAFE silent
        totals = deliver_all(store, cfg.alerts)
        assert totals == {"delivered": 2, "retry": 1, "failed": 0}
        assert len(good.delivered) == 2 and len(flaky.requests) == 1  # first failure ends its turn
        for _ in range(3):
            deliver_all(store, cfg.alerts)
        # alert 1: 3 attempts, then failed for good; alert 2 had its first try after that
        assert len(flaky.requests) == 4 and not flaky.delivered
        flaky.status = 200
        deliver_all(store, cfg.alerts)
        deliver_all(store, cfg.alerts)
        assert len(flaky.requests) == 5 and len(flaky.delivered) == 1  # failed is final
    rows = outbox.recent(store)  # newest first; deliveries by channel name
    states = [(d["channel"], d["state"], d["attempts"]) for r in rows for d in r["deliveries"]]
    assert states == [
        ("flaky", "delivered", 2),
        ("good", "delivered", 1),
        ("flaky", "failed", 3),
        ("good", "delivered", 1),
    ]
    assert table_count(store, outbox.T_ATTEMPTS) == 2 + 5
    assert [d.json["id"] for d in good.delivered] == [r["id"] for r in reversed(rows)]
    body = good.delivered[0].json
    for key in ("id", "kind", "account", "protocol", "market", "chain_id", "block_number",
                "block_hash", "tier", "previous_tier", "health_factor", "reasons",
                "liquidation_probability", "horizon_s", "liquidation_price", "advice", "text"):  # fmt: skip
        assert key in body, key
    assert body["kind"] == "enter" and body["account"] == account(0)
    assert body["tier"] == "CRITICAL" and body["health_factor"] == str(hf(1.04))
    assert body["liquidation_price"][0]["symbol"] == "WETH"
    assert body["advice"]["source"] == "health_factor"
    assert "HF 1.0400" in body["text"] and "history" in body["text"]


def test_backoff_waits_between_attempts(store: Store, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from onchain.config import load_config

    monkeypatch.setenv("ONCHAIN_TEST_SECRET", SECRET)
    with Receiver(SECRET, status=500) as r:
        cfg = load_config(alerts_config(tmp_path, webhook("hook", r.url)
                                        + "[alerts.delivery]\nretry_base_s = 60\n"))  # fmt: skip
        write_block(store, cfg, 1, [1.04])
        deliver_all(store, cfg.alerts)
        deliver_all(store, cfg.alerts)
        assert len(r.requests) == 1  # the retry is 60 s away
        with store.write() as conn:  # as if the minute had passed
            conn.execute(update(outbox.T_DELIVERIES).values(
                next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
        r.status = 200
        assert deliver_all(store, cfg.alerts)["delivered"] == 1
    assert [d.json["id"] for d in r.requests] == [r.requests[0].json["id"]] * 2  # same id


# -- the command line ------------------------------------------------------------------------


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCHAIN_")}
    return {**env, **extra}


def test_alerts_test_and_list_from_the_command_line(tmp_path: Path) -> None:
    with Receiver(SECRET) as r, Receiver(status=500) as down:
        path = alerts_config(
            tmp_path,
            webhook("hook", r.url)
            + f'[[alerts.channels]]\nname = "down"\nurl = "json://127.0.0.1:{down.port}/x"\n',
        )
        env = env_with(ONCHAIN_TEST_SECRET=SECRET)
        ok = run_cli(
            "alerts", "test", "--config", str(path), "--channel", "hook", "--json", env=env
        )
        assert ok.returncode == 0, ok.stderr
        (result,) = json.loads(ok.stdout)
        assert result["channel"] == "hook" and result["ok"] and result["scheme"] == "http"
        assert r.delivered[0].signed and r.delivered[0].json["kind"] == "test"
        both = run_cli("alerts", "test", "--config", str(path), env=env)
        assert both.returncode == 1
        assert "hook (http): delivered" in both.stdout and "down (json): FAILED" in both.stdout
        for text in (ok.stdout, ok.stderr, both.stdout, both.stderr):
            assert SECRET not in text and str(r.port) not in text and "127.0.0.1" not in text
    assert run_cli("db", "upgrade", "--config", str(path), env=env).returncode == 0
    listed = run_cli("alerts", "list", "--config", str(path), "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert "no alerts yet" in run_cli("alerts", "list", "--config", str(path), env=env).stdout


@pytest.mark.parametrize(
    ("channels", "rules", "env", "words"),
    [
        ('[[alerts.channels]]\nname = "x"\nurl = "nosuchscheme://abc"\n', "", {},
         ["Apprise cannot use", "nosuchscheme"]),
        (webhook("hook", "http://127.0.0.1:9/x", "ONCHAIN_UNSET_SECRET"), "", {},
         ["ONCHAIN_UNSET_SECRET is not set"]),
        ('[[alerts.channels]]\nname = "s"\nurl_env = "ONCHAIN_SLACK_URL"\n', "", {},
         ["ONCHAIN_SLACK_URL is not set"]),
        (webhook("hook", "http://127.0.0.1:9/x"), '[[alerts.rules]]\nfrom_tier = "DOOMED"\n',
         {"ONCHAIN_TEST_SECRET": SECRET}, ["unknown tier 'DOOMED'", "LIQUIDATABLE"]),
        ('[[alerts.channels]]\nname = "h"\nurl = "http://127.0.0.1:9/x"\n', "", {},
         ["needs 'secret_env'"]),
        (webhook("hook", "http://127.0.0.1:9/x"), '[[alerts.rules]]\nmin_target_profit = 100\n',
         {"ONCHAIN_TEST_SECRET": SECRET}, ["'min_target_profit' is not available"]),
    ],
)  # fmt: skip
def test_bad_alert_config_is_one_clear_line_exit_2_and_nothing_sent(
    tmp_path: Path, channels: str, rules: str, env: dict[str, str], words: list[str]
) -> None:
    with Receiver() as r:
        path = alerts_config(tmp_path, channels.replace("127.0.0.1:9", f"127.0.0.1:{r.port}"),
                             rules)  # fmt: skip
        commands = [["run", "--config", str(path), "--once"]]
        if "Apprise" in words[0] or "not set" in words[0]:  # the channel checks: both commands
            commands.append(["alerts", "test", "--config", str(path)])
        for args in commands:
            result = run_cli(*args, env=env_with(**env))
            assert_one_clear_error(result, *words)
            assert SECRET not in result.stderr
    assert r.requests == []


def test_secrets_never_reach_the_repr_of_the_config(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:  # fmt: skip
    from onchain.config import load_config

    monkeypatch.setenv("ONCHAIN_TEST_SECRET", SECRET)
    monkeypatch.setenv("ONCHAIN_SLACK_URL", "slack://TOKENA/TOKENB/TOKENC/#alerts")
    cfg = load_config(alerts_config(
        tmp_path, webhook("hook", "http://127.0.0.1:9/x")
        + '[[alerts.channels]]\nname = "slack"\nurl_env = "ONCHAIN_SLACK_URL"\n'))  # fmt: skip
    shown = repr(cfg) + str([c.shown for c in cfg.alerts.channels.values()])
    assert SECRET not in shown and "TOKENB" not in shown
    assert cfg.alerts.channels["slack"].shown == "slack (slack)"
    assert cfg.jobs.deliver.enabled  # rules and channels: the delivery job runs
    assert replace(cfg.alerts.rules[0]).name == "any"


def test_digest_every_n_hours_lists_the_watched_positions_at_risk(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onchain.config import load_config

    monkeypatch.setenv("ONCHAIN_TEST_SECRET", SECRET)
    rules = (
        '[[alerts.rules]]\nname = "digest"\nfrom_tier = "WATCH"\ndigest_every_h = 6\n'
        f'accounts = ["{account(0)}", "{account(1)}", "{account(2)}"]\n'
    )
    with Receiver(SECRET) as r:
        cfg = load_config(alerts_config(tmp_path, webhook("hook", r.url), rules))
        assert write_block(store, cfg, 1, [1.04, 1.2, 1.5, 1.01]) == 3  # 2 enters + digest
        assert write_block(store, cfg, 2, [1.04, 1.2, 1.5, 1.01]) == 0  # 6 h not passed
        with store.write() as conn:  # as if 6 hours had passed
            conn.execute(
                update(outbox.T_STATE)
                .where(outbox.T_STATE.c.account == "")
                .values(last_fired_at=datetime.now(UTC) - timedelta(hours=6, seconds=1))
            )
        assert write_block(store, cfg, 3, [1.3, 1.2, 1.5, 1.01]) == 2  # account 0 recovered; digest
        deliver_all(store, cfg.alerts)
    digests = [d.json for d in r.delivered if d.json["kind"] == "digest"]
    assert [len(d["positions"]) for d in digests] == [2, 1]  # account 3 is not watched
    assert [p["account"] for p in digests[0]["positions"]] == [account(0), account(1)]
    assert digests[0]["text"].startswith("DIGEST m: 2 position(s) at risk")
    kinds = [d.json["kind"] for d in r.delivered]
    assert kinds == ["enter", "enter", "digest", "recover", "digest"]  # 1.3 >= 1.04 + 0.05


def test_a_console_channel_prints_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    from onchain.alerts.config import ChannelConfig, Secret

    payload = {"id": "c0ffee" * 4, "kind": "enter", "text": "AT RISK HIGH: 0xabc"}
    assert send(ChannelConfig("screen", "console", Secret("console://")), payload).ok
    assert capsys.readouterr().out == "[alert screen c0ffeec0ffee]\nAT RISK HIGH: 0xabc\n"
