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
from dataclasses import dataclass, field
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
    # library name -> byte offsets of its 20-byte address slots in `bytecode` (zeroed until linked)
    link_references: dict[str, list[int]] = field(default_factory=dict)

    def linked(self, libraries: dict[str, str]) -> bytes:
        """Creation bytecode with each library's address written into its slots."""
        code = bytearray(self.bytecode)
        for name, offsets in self.link_references.items():
            if name not in libraries:
                raise DevnetError(f"contract needs library {name} linked")
            address = bytes.fromhex(libraries[name].lower().removeprefix("0x"))
            for start in offsets:
                code[start : start + 20] = address
        return bytes(code)


def solc_version(compiler: str = "solc") -> str:
    """The solc-js package version; part of the cache key so an upgrade never reuses outputs.
    `compiler` is the npm package (or alias, e.g. "solc-0.8.27") that provides solc-js."""
    package = NODE_MODULES / compiler / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise DevnetError(f"solc-js not found in {NODE_MODULES}: run `make setup`") from exc


def standard_json_input(
    sources: dict[str, str],
    *,
    optimizer_runs: int,
    via_ir: bool,
    evm_version: str,
    remappings: list[str] | None = None,
    bytecode_hash: str | None = None,
    link_libraries: bool = False,
) -> dict[str, Any]:
    """The solc standard-JSON input; only ABI and bytecode are requested to keep it fast
    (plus link references when the caller links libraries)."""
    settings: dict[str, Any] = {
        "optimizer": {"enabled": True, "runs": optimizer_runs},
        "viaIR": via_ir,
        "evmVersion": evm_version,
        "outputSelection": {
            "*": {"*": _OUTPUTS + (["evm.bytecode.linkReferences"] if link_libraries else [])}
        },
    }
    if remappings:
        settings["remappings"] = list(remappings)
    if bytecode_hash:
        settings["metadata"] = {"bytecodeHash": bytecode_hash}
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": settings,
    }


def compile_sources(
    sources: dict[str, str],
    *,
    optimizer_runs: int = 200,
    via_ir: bool = False,
    evm_version: str = "paris",
    include_paths: list[Path] | None = None,
    compiler: str = "solc",
    remappings: list[str] | None = None,
    bytecode_hash: str | None = None,
    link_libraries: bool = False,
    extra_key: str = "",
) -> dict[str, CompiledContract]:
    """Compile `sources` (unit name -> Solidity text) and return contracts keyed by name.

    `compiler` names the solc-js npm package (an alias pins another version); with
    `link_libraries` contracts that call external libraries come back with zeroed slots and
    their `link_references`. `extra_key` joins the cache key (e.g. a lockfile digest, so a
    new version of imported packages is recompiled).

    Imports not in `sources` resolve against `include_paths` (default: node_modules). When two
    units define the same contract name, the one from `sources` wins over an imported one.
    Outputs are cached under .cache/solc/ keyed by a sha256 of the input, compiler version and
    include paths; imported files are not hashed, so clear the cache after editing them.
    """
    if not sources:
        raise DevnetError("compile_sources: no sources given")
    roots = [Path(p).resolve() for p in (include_paths or [NODE_MODULES])]
    solc_input = standard_json_input(
        sources,
        optimizer_runs=optimizer_runs,
        via_ir=via_ir,
        evm_version=evm_version,
        remappings=remappings,
        bytecode_hash=bytecode_hash,
        link_libraries=link_libraries,
    )
    key_material: dict[str, Any] = {
        "input": solc_input,
        "solc": solc_version(compiler),
        "include_paths": [str(p) for p in roots],
    }
    if extra_key:
        key_material["extra"] = extra_key
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
        output = _run_solc(solc_input, roots, compiler)
        _raise_on_errors(output)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(output))
        tmp.replace(cache_file)  # atomic, so parallel builds never read half a file
    return _contracts(output, top_level=set(sources), link_libraries=link_libraries)


def compile_file(path: Path, **kwargs: Any) -> dict[str, CompiledContract]:
    """Compile one .sol file (e.g. from onchain/devnet/contracts) under its file name."""
    return compile_sources({Path(path).name: Path(path).read_text()}, **kwargs)


def _run_solc(
    solc_input: dict[str, Any], roots: list[Path], compiler: str = "solc"
) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise DevnetError("node not found on PATH: solc-js needs Node.js")
    args = [node, str(COMPILE_SCRIPT), "--solc", compiler]
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


def _contracts(
    output: dict[str, Any], *, top_level: set[str], link_libraries: bool = False
) -> dict[str, CompiledContract]:
    result: dict[str, CompiledContract] = {}
    # Imported units first, so a same-named contract from the given sources overrides them.
    units = sorted(output.get("contracts", {}).items(), key=lambda kv: kv[0] in top_level)
    for unit, contracts in units:
        for name, data in contracts.items():
            evm = data.get("evm", {})
            code = evm.get("bytecode", {}).get("object", "")
            links: dict[str, list[int]] = {}
            if link_libraries:
                for libs in evm.get("bytecode", {}).get("linkReferences", {}).values():
                    for lib, refs in libs.items():
                        links.setdefault(lib, []).extend(r["start"] for r in refs)
                for offsets in links.values():
                    for start in offsets:  # zero the placeholder; `linked` writes the address
                        code = code[: start * 2] + "00" * 20 + code[start * 2 + 40 :]
            result[name] = CompiledContract(
                abi=data.get("abi", []),
                bytecode=_hex_bytes(code, unit, name),
                deployed_bytecode=_hex_bytes(
                    _zero_placeholders(evm.get("deployedBytecode", {}).get("object", ""))
                    if link_libraries
                    else evm.get("deployedBytecode", {}).get("object", ""),
                    unit,
                    name,
                ),
                link_references=links,
            )
    return result


def _zero_placeholders(obj: str) -> str:
    """Runtime code of a library-linking contract, with `__$...$__` slots zeroed (reference only)."""
    while (i := obj.find("__$")) >= 0:
        obj = obj[:i] + "00" * 20 + obj[i + 40 :]
    return obj


def _hex_bytes(obj: str, unit: str, name: str) -> bytes:
    if "__$" in obj:
        raise DevnetError(f"{unit}:{name} needs external libraries linked; not supported")
    return bytes.fromhex(obj.removeprefix("0x"))
