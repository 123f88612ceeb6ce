// Every test worker gets its own XDG_CONFIG_HOME, so that no test reads or writes the real
// ~/.config/hpcbot (where the generated webhook secret lives); child processes inherit it.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

process.env.XDG_CONFIG_HOME = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-xdg-'));
