"""The arrows of ARCHITECTURE.md: a module that imports across a forbidden one fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[2] / "onchain"

CLI = ("onchain.cli",)  # prefixes: onchain.cli, onchain.cli_*, onchain.cli.*
# what the cli's commands may share; every other module of onchain/cli/ is a command (or group)
CLI_SHARED = {
    "onchain.cli.common",
    "onchain.cli.log_setup",
    "onchain.cli.positions",
    "onchain.cli.stored",
}
APP = ("onchain.app",)

# importer prefix -> imported prefixes it must not reach
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "onchain.risk": (
        "onchain.protocols",
        "onchain.rpc",
        "onchain.store",
        "onchain.jobs",
        "onchain.alerts",
        "onchain.config",
        "onchain.devnet",
        *APP,
        *CLI,
    ),
    "onchain.protocols": (
        "onchain.store",
        "onchain.jobs",
        "onchain.alerts",
        "onchain.risk",
        "onchain.devnet",
        *APP,
        *CLI,
    ),
    "onchain.model": (
        "onchain.protocols",
        "onchain.risk",
        "onchain.store",
        "onchain.jobs",
        "onchain.alerts",
        *APP,
        *CLI,
    ),
    # the model's arrays (a block's positions as the risk book's inputs): the model's rules
    "onchain.position_rows": (
        "onchain.protocols",
        "onchain.risk",
        "onchain.store",
        "onchain.jobs",
        "onchain.alerts",
        *APP,
        *CLI,
    ),
    "onchain.rpc": (
        "onchain.protocols",
        "onchain.model",
        "onchain.risk",
        "onchain.store",
        "onchain.jobs",
        "onchain.alerts",
        *APP,
        *CLI,
    ),
    "onchain": CLI,  # anything -> cli (the cli modules themselves are exempt below)
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m == "onchain" or m.startswith("onchain.")}


def _under(module: str, prefix: str) -> bool:
    if prefix in CLI:
        return module == prefix or module.startswith((prefix + ".", prefix + "_"))
    return module == prefix or module.startswith(prefix + ".")


def _is_cli(module: str) -> bool:
    return module == "onchain.__main__" or any(_under(module, p) for p in CLI)


def violations() -> set[tuple[str, str]]:
    bad: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module(path)
        for imported in _imports(path):
            for room, banned in FORBIDDEN.items():
                if not _under(importer, room):
                    continue
                if room == "onchain" and _is_cli(importer):
                    continue  # the cli may import the cli (its own room)
                for target in banned:
                    if _under(imported, target) and not _under(importer, target):
                        # `from onchain.cli import x` names onchain.cli.x too: count it once
                        bad.add((importer, target if target in CLI else imported))
    return bad


def test_no_module_imports_across_a_forbidden_arrow() -> None:
    assert violations() == set(), "forbidden imports (see ARCHITECTURE.md)"


def cli_commands_importing_commands() -> set[tuple[str, str]]:
    """(command module, command module it imports): commands share only the CLI_SHARED ones."""
    bad: set[tuple[str, str]] = set()
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        importer = _module(path)
        if importer == "onchain.cli":
            continue  # the package registers every command
        for imported in _imports(path):
            parts = imported.split(".")
            if len(parts) < 3 or parts[:2] != ["onchain", "cli"]:
                continue
            module = ".".join(parts[:3])
            if module not in CLI_SHARED and module != importer:
                bad.add((importer, module))
    return bad


def test_cli_commands_never_import_each_other() -> None:
    assert cli_commands_importing_commands() == set(), "a command imports another command"
    commands = {_module(p) for p in (PACKAGE / "cli").glob("*.py")} - CLI_SHARED - {"onchain.cli"}
    assert {"onchain.cli.scan", "onchain.cli.watch", "onchain.cli.db"} <= commands
    assert not list(PACKAGE.glob("cli_*.py")), "the cli lives in onchain/cli/, one module a command"


def test_the_checker_sees_a_forbidden_arrow(tmp_path: Path) -> None:
    """The rule itself: a risk module importing an adapter, or the store importing the cli."""
    assert _under("onchain.risk.book", "onchain.risk")
    assert _under("onchain.cli_store", "onchain.cli") and _under("onchain.cli.scan", "onchain.cli")
    assert not _under("onchain.client", "onchain.cli")
    sample = tmp_path / "sample.py"
    sample.write_text("from onchain.protocols.base import Position\nimport onchain.cli\n")
    assert _imports(sample) >= {"onchain.protocols.base", "onchain.cli"}


# rooms that must not know a protocol: no adapter's name, no protocol's own vocabulary
PROTOCOL_FREE = (
    "output.py",
    "numbers.py",
    "symbols.py",
    "model.py",
    "position_rows.py",
    "app",
    "jobs",
    "risk",
    "store",
)
PROTOCOL_WORDS = {"aave-v3", "morpho-blue", "addresses_provider", "emode_category"}


def protocol_words(path: Path) -> set[str]:
    """Adapter names and protocol vocabulary a module spells (string constants, attributes)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {w for w in PROTOCOL_WORDS if w == node.value}
        elif isinstance(node, ast.Attribute) and node.attr in PROTOCOL_WORDS:
            found.add(node.attr)
    return found


def test_protocol_knowledge_stays_in_the_adapters() -> None:
    spelled = {
        str(path.relative_to(PACKAGE)): words
        for room in PROTOCOL_FREE
        for path in sorted(
            (PACKAGE / room).rglob("*.py") if (PACKAGE / room).is_dir() else [PACKAGE / room]
        )
        if (words := protocol_words(path))
    }
    assert spelled == {}, "protocol names outside protocols/ (see ARCHITECTURE.md)"


def test_the_checker_sees_a_protocol_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('PROTOCOL = "aave-v3"\nwhere = state.addresses_provider\n')
    assert protocol_words(sample) == {"aave-v3", "addresses_provider"}


def _option_helps(name: str) -> dict[str, str]:
    """Every command's help text for one option (`run`, `db upgrade`, ...), from the CLI itself."""
    import typer

    from onchain.cli import app

    found: dict[str, str] = {}

    def walk(command: Any, path: str) -> None:  # typer's own click: looked at, not typed
        for sub_name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {sub_name}".strip())
        for param in command.params:
            if name in param.opts and param.param_type_name == "option":
                found[path] = param.help or ""

    walk(typer.main.get_command(app), "")
    return found


def test_cli_help_names_protocols_only_from_the_catalog() -> None:
    """--protocol lists exactly the catalog's adapters; --market names no protocol of its own."""
    from onchain.protocols.catalog import ADAPTER_NAMES

    protocol_helps = _option_helps("--protocol")
    assert protocol_helps, "no command has --protocol"
    for command, text in protocol_helps.items():
        listed = re.search(r"\(([^)]*)\)", text)
        assert listed is not None, (command, text)
        assert listed.group(1).split(", ") == list(ADAPTER_NAMES), (command, text)
    market_helps = _option_helps("--market")
    assert market_helps, "no command has --market"
    for command, text in market_helps.items():
        assert not re.search(r"aave|morpho", text, re.IGNORECASE), (command, text)
