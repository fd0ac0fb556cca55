#!/usr/bin/env node
// The diskwright command line. Runs the compiled build (dist/, made by `npm ci` via the prepare script);
// in a checkout without a build it runs the TypeScript sources through tsx.
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const root = path.join(__dirname, '..');
const built = path.join(root, 'dist', 'main', 'src-main', 'cli', 'main.js');
let cli;
if (fs.existsSync(built) && !process.env.DISKWRIGHT_FROM_SOURCE) {
  cli = require(built);
} else {
  require('tsx/cjs');
  cli = require(path.join(root, 'src-main', 'cli', 'main.ts'));
}
cli.main().catch((err) => {
  process.stderr.write(`diskwright: ${err && err.message ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
