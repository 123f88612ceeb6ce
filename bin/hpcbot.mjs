#!/usr/bin/env node
// The installed `hpcbot` command: the compiled CLI in dist/, which `npm ci` builds (the `prepare`
// script). From a checkout without it, say how to get it rather than fail on a missing module.
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'hpcbot: the compiled CLI (dist/) is missing; run `npm run build` in the hpc-build-bot checkout\n',
  );
  process.exit(1);
}
await import(main.href);
