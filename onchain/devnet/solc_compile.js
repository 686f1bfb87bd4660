#!/usr/bin/env node
// Compile a solc standard-JSON input read from stdin with the npm solc-js, offline.
//
// Usage: node solc_compile.js [--include-path DIR]...
// Imports the input does not carry (e.g. "@morpho-org/morpho-blue/src/Morpho.sol") are read
// from the include paths by the import callback, so node_modules packages compile as-is.
// The standard-JSON output goes to stdout; exit code 0 even when it reports compile errors
// (the caller reads them from the output), non-zero only when solc itself cannot run.
"use strict";

const fs = require("fs");
const path = require("path");

function parseArgs(argv) {
  const includePaths = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--include-path" && i + 1 < argv.length) {
      includePaths.push(path.resolve(argv[++i]));
    } else {
      throw new Error(`unknown argument: ${argv[i]}`);
    }
  }
  return { includePaths };
}

function makeImportCallback(includePaths) {
  return function findImports(importPath) {
    for (const root of includePaths) {
      const full = path.resolve(root, importPath);
      // Refuse paths that climb out of the include root ("../../etc/passwd").
      if (full !== root && !full.startsWith(root + path.sep)) continue;
      if (fs.existsSync(full) && fs.statSync(full).isFile()) {
        return { contents: fs.readFileSync(full, "utf8") };
      }
    }
    return { error: `File not found in include paths: ${importPath}` };
  };
}

function main() {
  const { includePaths } = parseArgs(process.argv.slice(2));
  const input = fs.readFileSync(0, "utf8");
  const solc = require("solc");
  const output = solc.compile(input, { import: makeImportCallback(includePaths) });
  process.stdout.write(output);
}

try {
  main();
} catch (err) {
  process.stderr.write(`solc_compile.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
}
