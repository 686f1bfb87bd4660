"""-v/-q, --log-format and --log-file on every command: how much a command says on stderr and
where its log goes. Every log handler we install carries the redaction filter, so the secrets of
the endpoints, the database and the alert channels never reach a log line, in any format, on
stderr or in the file."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from onchain.errors import InputError
from onchain.log_redaction import RedactSecrets

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


VerboseOpt = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        show_default=False,
        help="say more on stderr: -v what the command does, -vv every request (keys hidden)",
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="only errors on stderr (no notes, warnings or progress)"),
]
LogFormatOpt = Annotated[
    LogFormat,
    typer.Option("--log-format", help="log lines as text, or json: one JSON object per line"),
]
LogFileOpt = Annotated[
    Path | None,
    typer.Option("--log-file", help="append the log to this file instead of stderr"),
]


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


@dataclass
class LogChoice:
    """What the flags asked for; a flag given to `onchain` itself holds for its command."""

    verbose: int = 0
    quiet: bool = False
    format: LogFormat = LogFormat.text
    file: Path | None = None
    given: set[str] = field(default_factory=set)


CHOICE = LogChoice()
REDACT = RedactSecrets([])
_HANDLER: logging.Handler | None = None


def remember(name: str, value: Any, explicit: bool) -> None:
    """A flag's value, unless the same flag was given explicitly before (to `onchain` itself)."""
    if explicit or name not in CHOICE.given:
        setattr(CHOICE, name, value)
    if explicit:
        CHOICE.given.add(name)


def hide_secrets(urls: Sequence[str | None] = (), secrets: Sequence[str | None] = ()) -> None:
    """Secrets known from here on (endpoint URLs, passwords, tokens) are hidden in every line."""
    REDACT.add(urls, secrets)


def configure(base_level: int = logging.WARNING, level: int | None = None) -> None:
    """(Re)install our one handler on the root logger: stderr or --log-file, text or JSON, at
    `level`, else `base_level` moved by -v/-q. Run first by every command; `run` and `serve`
    call it again with their own base level (INFO: their log is their output)."""
    global _HANDLER
    from onchain.cli.common import err

    if CHOICE.verbose and CHOICE.quiet:
        raise InputError("give -v or -q, not both")
    if level is None:
        level = logging.ERROR if CHOICE.quiet else max(base_level - 10 * CHOICE.verbose, 1)
    err.quiet = CHOICE.quiet
    hide_secrets(
        urls=[os.environ.get("ONCHAIN_RPC_URL", ""), os.environ.get("ONCHAIN_DB_URL", "")],
        secrets=[os.environ.get("ONCHAIN_API_TOKEN")],
    )
    handler: logging.Handler
    if CHOICE.file is not None:
        try:
            handler = logging.FileHandler(CHOICE.file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--log-file {CHOICE.file}: {exc.strerror or exc}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLines() if CHOICE.format is LogFormat.json else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(REDACT)
    root = logging.getLogger()
    if _HANDLER is not None:
        root.removeHandler(_HANDLER)
        _HANDLER.close()
    root.addHandler(handler)
    root.setLevel(level)
    _HANDLER = handler
    # libraries speak at -vv (debug) only: urllib3 logs every request, the scheduler every tick
    for name, usual in LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG else usual)
    # apprise logs the channel URLs it parses (tokens in them), at any level: never shown
    logging.getLogger("apprise").setLevel(logging.CRITICAL)


LIBRARY_LEVELS = {
    "urllib3": logging.WARNING,
    "alembic": logging.WARNING,
    "apscheduler": logging.ERROR,
}


def _options_template(
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
    log_file: LogFileOpt = None,
) -> None:
    """The logging options as typer builds them (copied onto every command)."""


FIELDS = {"verbose": "verbose", "quiet": "quiet", "log_format": "format", "log_file": "file"}


def _remember_param(ctx: Any, param: Any, value: Any) -> Any:
    source = ctx.get_parameter_source(param.name)
    explicit = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
    remember(FIELDS[param.name], value, explicit)
    return value


def logging_params() -> list[Any]:
    """Fresh option objects for -v/-q/--log-format/--log-file, consumed here (not passed to the
    command function)."""
    holder = typer.Typer(add_completion=False)
    holder.command()(_options_template)
    params = list(typer.main.get_command(holder).params)
    for param in params:
        param.expose_value = False
        param.callback = _remember_param
    return params


def add_to_every_command(command: Any) -> None:
    """The logging options on `command` and every command below it; each command configures
    logging before it runs."""
    command.params.extend(logging_params())
    if command.callback is not None:
        command.callback = _configured_first(command.callback)
    for sub in getattr(command, "commands", {}).values():
        add_to_every_command(sub)


def _configured_first(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        configure()
        return callback(*args, **kwargs)

    return run
