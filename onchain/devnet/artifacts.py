"""Load Hardhat artifacts shipped in npm packages and link their library placeholders."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from onchain.devnet.anvil import NODE_MODULES
from onchain.errors import DevnetError

AAVE_ARTIFACTS = NODE_MODULES / "@aave" / "core-v3" / "artifacts" / "contracts"


@cache
def load_artifact(relative: str, root: Path = AAVE_ARTIFACTS) -> dict[str, Any]:
    """`relative` is e.g. 'protocol/pool/Pool.sol/Pool.json' under the package's artifacts."""
    path = root / relative
    if not path.exists():
        raise DevnetError(f"artifact missing: {path} (run `make setup` to install node packages)")
    return json.loads(path.read_text())


def linked_bytecode(artifact: dict[str, Any], libraries: dict[str, str]) -> bytes:
    """Creation bytecode with every library placeholder replaced at the artifact's byte offsets."""
    code = artifact["bytecode"][2:]
    for _source, libs in artifact.get("linkReferences", {}).items():
        for name, refs in libs.items():
            if name not in libraries:
                raise DevnetError(f"{artifact['contractName']} needs library {name}")
            address = libraries[name].lower().removeprefix("0x")
            for ref in refs:
                start = ref["start"] * 2
                code = code[:start] + address + code[start + ref["length"] * 2 :]
    if "__$" in code:
        raise DevnetError(f"{artifact['contractName']}: unlinked library placeholder left")
    return bytes.fromhex(code)
