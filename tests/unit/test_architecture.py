"""The arrows of ARCHITECTURE.md: a module that imports across a forbidden one fails here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "onchain"

CLI = ("onchain.cli",)  # prefixes: onchain.cli, onchain.cli_*, onchain.cli.*
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


def test_the_checker_sees_a_forbidden_arrow(tmp_path: Path) -> None:
    """The rule itself: a risk module importing an adapter, or the store importing the cli."""
    assert _under("onchain.risk.book", "onchain.risk")
    assert _under("onchain.cli_store", "onchain.cli") and _under("onchain.cli.scan", "onchain.cli")
    assert not _under("onchain.client", "onchain.cli")
    sample = tmp_path / "sample.py"
    sample.write_text("from onchain.protocols.base import Position\nimport onchain.cli\n")
    assert _imports(sample) >= {"onchain.protocols.base", "onchain.cli"}
