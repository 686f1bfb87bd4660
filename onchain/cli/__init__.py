"""`onchain ...`: human tables by default, --json/--csv for machines, one-line errors with exit
codes that mean something (1: a job of `run --once` failed, 2: bad input or unreachable RPC,
3: devnet failure, 4: `watch --fail-on` found a position at risk, 130: interrupted).

One module per command or command group; what they share is in `common` (options, market
resolution, output formats, errors and exit codes), `log_setup` (-v/-q, log format and file),
`positions` (risk fields and the scan table) and `stored` (the snapshot store). Commands never
import each other, and import what is heavy inside their function: `onchain --help` loads none
of numpy, SQLAlchemy, web3 or the adapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from onchain.cli import (
    alerts,
    backtest,
    db,
    demo,
    devnet,
    history,
    init,
    report,
    run,
    scan,
    serve,
    status,
    stress,
    targets,
    watch,
)
from onchain.cli.common import run as run_app
from onchain.cli.log_setup import add_to_every_command

app = typer.Typer(
    no_args_is_help=True,
    help=__doc__.split("\n\n")[0],
    rich_markup_mode=None,  # plain help: `--json`, not `--json <bool>`; and no rich at start-up
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"onchain {version('onchain')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    pass


app.command("scan")(scan.scan_cmd)
app.command("watch")(watch.watch_cmd)
app.command("targets")(targets.targets_cmd)
app.command("stress")(stress.stress_cmd)
app.command("demo")(demo.demo_cmd)
app.command("init")(init.init_cmd)
app.add_typer(devnet.devnet_app, name="devnet")
app.add_typer(db.db_app, name="db")
app.command("run")(run.run_cmd)
app.command("status")(status.status_cmd)
app.command("history")(history.history_cmd)
app.command("report")(report.report_cmd)
app.add_typer(alerts.alerts_app, name="alerts")
app.command("serve")(serve.serve_cmd)
app.command("backtest")(backtest.backtest_cmd)


def command() -> typer.core.TyperGroup:
    """The click command tree, with -v/-q/--log-format/--log-file on every command."""
    group = typer.main.get_command(app)
    add_to_every_command(group)
    return group  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: map our errors to one line on stderr and an exit code."""
    run_app(command, argv)


if __name__ == "__main__":
    main()
