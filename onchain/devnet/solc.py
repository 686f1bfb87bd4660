"""Compile Solidity offline with the npm solc-js, caching outputs on disk.

We use solc-js from node_modules (not a downloaded native solc) so a devnet build needs no
network access and every machine compiles with the exact same pinned compiler.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onchain.devnet.anvil import NODE_MODULES, PROJECT_ROOT
from onchain.errors import DevnetError

COMPILE_SCRIPT = Path(__file__).with_name("solc_compile.js")
CACHE_DIR = PROJECT_ROOT / ".cache" / "solc"
CONTRACTS_DIR = Path(__file__).with_name("contracts")
_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]


@dataclass(frozen=True)
class CompiledContract:
    """What deploying and calling a contract needs; the rest of solc's output is dropped."""

    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


def solc_version() -> str:
    """The solc-js package version; part of the cache key so an upgrade never reuses outputs."""
    package = NODE_MODULES / "solc" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise DevnetError(f"solc-js not found in {NODE_MODULES}: run `make setup`") from exc


def standard_json_input(
    sources: dict[str, str], *, optimizer_runs: int, via_ir: bool, evm_version: str
) -> dict[str, Any]:
    """The solc standard-JSON input; only ABI and bytecode are requested to keep it fast."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": {
            "optimizer": {"enabled": True, "runs": optimizer_runs},
            "viaIR": via_ir,
            "evmVersion": evm_version,
            "outputSelection": {"*": {"*": _OUTPUTS}},
        },
    }


def compile_sources(
    sources: dict[str, str],
    *,
    optimizer_runs: int = 200,
    via_ir: bool = False,
    evm_version: str = "paris",
    include_paths: list[Path] | None = None,
) -> dict[str, CompiledContract]:
    """Compile `sources` (unit name -> Solidity text) and return contracts keyed by name.

    Imports not in `sources` resolve against `include_paths` (default: node_modules). When two
    units define the same contract name, the one from `sources` wins over an imported one.
    Outputs are cached under .cache/solc/ keyed by a sha256 of the input, compiler version and
    include paths; imported files are not hashed, so clear the cache after editing them.
    """
    if not sources:
        raise DevnetError("compile_sources: no sources given")
    roots = [Path(p).resolve() for p in (include_paths or [NODE_MODULES])]
    solc_input = standard_json_input(
        sources, optimizer_runs=optimizer_runs, via_ir=via_ir, evm_version=evm_version
    )
    key_material = {
        "input": solc_input,
        "solc": solc_version(),
        "include_paths": [str(p) for p in roots],
    }
    digest = hashlib.sha256(
        json.dumps(key_material, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    cache_file = CACHE_DIR / f"{digest}.json"

    output: dict[str, Any] | None = None
    if cache_file.exists():
        try:
            output = json.loads(cache_file.read_text())
        except ValueError:
            output = None  # a torn write from an interrupted run: recompile
    if output is None:
        output = _run_solc(solc_input, roots)
        _raise_on_errors(output)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(output))
        tmp.replace(cache_file)  # atomic, so parallel builds never read half a file
    return _contracts(output, top_level=set(sources))


def compile_file(path: Path, **kwargs: Any) -> dict[str, CompiledContract]:
    """Compile one .sol file (e.g. from onchain/devnet/contracts) under its file name."""
    return compile_sources({Path(path).name: Path(path).read_text()}, **kwargs)


def _run_solc(solc_input: dict[str, Any], roots: list[Path]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise DevnetError("node not found on PATH: solc-js needs Node.js")
    args = [node, str(COMPILE_SCRIPT)]
    for root in roots:
        args += ["--include-path", str(root)]
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    try:
        proc = subprocess.run(
            args,
            input=json.dumps(solc_input).encode(),
            capture_output=True,
            env=env,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DevnetError("solc-js did not finish within 600s") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise DevnetError(f"solc-js failed: {err[-500:]}")
    try:
        return dict(json.loads(proc.stdout))
    except ValueError as exc:
        raise DevnetError("solc-js printed something that is not JSON") from exc


def _raise_on_errors(output: dict[str, Any]) -> None:
    for err in output.get("errors", []):
        if err.get("severity") == "error":
            message = err.get("formattedMessage") or err.get("message") or str(err)
            raise DevnetError(f"solc: {message.strip()}")


def _contracts(output: dict[str, Any], *, top_level: set[str]) -> dict[str, CompiledContract]:
    result: dict[str, CompiledContract] = {}
    # Imported units first, so a same-named contract from the given sources overrides them.
    units = sorted(output.get("contracts", {}).items(), key=lambda kv: kv[0] in top_level)
    for unit, contracts in units:
        for name, data in contracts.items():
            evm = data.get("evm", {})
            result[name] = CompiledContract(
                abi=data.get("abi", []),
                bytecode=_hex_bytes(evm.get("bytecode", {}).get("object", ""), unit, name),
                deployed_bytecode=_hex_bytes(
                    evm.get("deployedBytecode", {}).get("object", ""), unit, name
                ),
            )
    return result


def _hex_bytes(obj: str, unit: str, name: str) -> bytes:
    if "__$" in obj:
        raise DevnetError(f"{unit}:{name} needs external libraries linked; not supported")
    return bytes.fromhex(obj.removeprefix("0x"))
