#!/usr/bin/env node
// Compile a solc standard-JSON input read from stdin with the npm solc-js, offline.
//
// Usage: node solc_compile.js [--solc PACKAGE] [--include-path DIR]...
// PACKAGE is the npm package providing solc-js ("solc", or an alias such as "solc-0.8.27").
// Imports the input does not carry (e.g. "@morpho-org/morpho-blue/src/Morpho.sol") are read
// from the include paths by the import callback, so node_modules packages compile as-is.
// The standard-JSON output goes to stdout; exit code 0 even when it reports compile errors
// (the caller reads them from the output), non-zero only when solc itself cannot run.
"use strict";

const fs = require("fs");
const path = require("path");

function parseArgs(argv) {
  const includePaths = [];
  let compiler = "solc";
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--include-path" && i + 1 < argv.length) {
      includePaths.push(path.resolve(argv[++i]));
    } else if (argv[i] === "--solc" && i + 1 < argv.length) {
      compiler = argv[++i];
    } else {
      throw new Error(`unknown argument: ${argv[i]}`);
    }
  }
  return { includePaths, compiler };
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
  const { includePaths, compiler } = parseArgs(process.argv.slice(2));
  const input = fs.readFileSync(0, "utf8");
  if (!/^solc(-[0-9.]+)?$/.test(compiler)) throw new Error(`not a solc-js package: ${compiler}`);
  const solc = require(compiler);
  const output = solc.compile(input, { import: makeImportCallback(includePaths) });
  process.stdout.write(output);
}

try {
  main();
} catch (err) {
  process.stderr.write(`solc_compile.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
}
