// Every test file gets its own temporary root, removed when the file is done (tests/support/removeTemp.ts):
// TMPDIR points into it, so every mkdtemp of the file and of its child processes lands there, and
// XDG_CONFIG_HOME too, so that no test reads or writes the real ~/.config/hpcbot (where the generated
// webhook secret lives). The root is sticky and world-writable like /tmp, because jobs run as
// backend.run_as get TMPDIR passed on.
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-jest-'));
chmodSync(root, 0o1777);
process.env.HPCBOT_TEST_TMP_ROOT = root;
process.env.TMPDIR = root;
process.env.XDG_CONFIG_HOME = mkdtempSync(path.join(root, 'xdg-'));
