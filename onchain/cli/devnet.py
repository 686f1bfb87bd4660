"""`onchain devnet`: a local anvil chain with the real protocol contracts deployed, and the
commands that move it (set oracle prices, mine blocks)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from onchain.cli.common import check_writable, err
from onchain.errors import InputError, RpcUnavailable

devnet_app = typer.Typer(help="A local anvil chain with the real protocol contracts deployed.")


@devnet_app.callback(invoke_without_command=True)
def devnet_cmd(
    ctx: typer.Context,
    borrowers: Annotated[int, typer.Option("--borrowers", help="number of seeded borrowers")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="seed for the borrowers")] = 7,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="serve until Ctrl-C")
    ] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="ignore the cached state")] = False,
    write_config: Annotated[
        Path | None, typer.Option("--write-config", help="write a TOML config for this devnet")
    ] = None,
) -> None:
    """Start anvil with real Aave V3 and Morpho Blue deployments and seeded borrowers; print its
    URL and addresses."""
    if ctx.invoked_subcommand is not None:
        return
    from onchain.devnet.build import running_devnet

    if write_config is not None:  # refuse before minutes of building, not after
        check_writable(write_config, "--write-config")

    with running_devnet(borrowers, seed, rebuild=rebuild) as info:
        how = "loaded from cache" if info.loaded_from_cache else "built (cold deploy + seed)"
        extra = ""
        if info.aave36 is not None:
            extra = f"; Aave {info.aave36.version}: {len(info.aave36.all_borrowers)} borrowers"
        err.print(
            f"devnet {how} in {info.build_seconds:.2f}s: {len(info.borrowers)} borrowers{extra}"
        )
        if write_config:  # before the JSON: whoever reads it may open the config at once
            from onchain.devnet.config_file import write_devnet_config

            try:
                write_devnet_config(write_config, info, with_aave36=True)
            except OSError as exc:
                raise InputError(f"--write-config {write_config}: {exc.strerror}") from None
            err.print(f"wrote {write_config}")
        if keep_running:
            import signal

            def stop(_signum: int, _frame: Any) -> None:
                raise KeyboardInterrupt  # SIGTERM stops anvil too, like Ctrl-C

            # SIGINT too, before anyone can read the URL and send it: a program started in the
            # background (no job control) inherits SIGINT ignored, and Python leaves it so
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
        try:
            print(json.dumps(info.to_json(), indent=1), flush=True)
            if keep_running:
                err.print(f"serving on {info.rpc_url}; Ctrl-C stops it")
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            if not keep_running:
                raise


@devnet_app.command("set-price")
def devnet_set_price(
    prices: Annotated[list[str], typer.Argument(help="SYMBOL=USD pairs, e.g. WETH=2500")],
    rpc: Annotated[str, typer.Option("--rpc", help="the devnet's URL")],
    borrowers: Annotated[
        int, typer.Option("--borrowers", help="borrowers the devnet was built with")
    ] = 300,
    seed: Annotated[int, typer.Option("--seed", help="seed the devnet was built with")] = 7,
) -> None:
    """Publish new oracle prices on a running devnet (one block)."""
    from onchain.devnet.build import cached_deployment
    from onchain.devnet.control import set_prices
    from onchain.devnet.morpho import cached_morpho, set_prices_everywhere

    parsed: dict[str, float] = {}
    for item in prices:
        symbol, _, value = item.partition("=")
        try:
            parsed[symbol.upper()] = float(value)
        except ValueError:
            raise InputError(f"expected SYMBOL=USD, got {item!r}") from None
        if not (math.isfinite(parsed[symbol.upper()]) and parsed[symbol.upper()] > 0):
            raise InputError(f"{item}: a price must be a positive number of USD")
    aave, morpho = cached_deployment(borrowers, seed), cached_morpho(borrowers, seed)
    with _devnet_answers(rpc):
        if morpho is None:
            block = set_prices(rpc, aave, parsed)
        else:  # every protocol's oracles move together, in one block
            spelled = {s.upper(): s for s in [*morpho.tokens, *aave.price_feeds]}
            block = set_prices_everywhere(
                rpc, aave, morpho, {spelled.get(k, k): v for k, v in parsed.items()}
            )
    err.print(f"prices set in block {block}")


@contextmanager
def _devnet_answers(rpc: str) -> Iterator[None]:
    """A --rpc that is not a running devnet is one line (exit 2), not a requests traceback."""
    import requests

    from onchain.rpc.client import redact_url

    try:
        yield
    except requests.RequestException as exc:
        raise RpcUnavailable(
            f"no devnet answers at {redact_url(rpc)} ({type(exc).__name__}): start one with "
            "`onchain devnet --keep-running`"
        ) from None


@devnet_app.command("mine")
def devnet_mine(
    blocks: Annotated[int, typer.Argument(help="blocks to mine (at least 1)")] = 1,
    rpc: Annotated[str, typer.Option("--rpc", help="the devnet's URL")] = "",
) -> None:
    """Mine blocks on a running devnet."""
    from onchain.devnet.control import mine

    if not rpc:
        raise InputError("--rpc is required")
    if blocks < 1:
        raise InputError(f"blocks to mine must be at least 1, got {blocks}")
    with _devnet_answers(rpc):
        head = mine(rpc, blocks)
    err.print(f"head is now block {head}")
