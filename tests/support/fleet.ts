/**
 * Bot instances as GitHub Apps for the fleet tests (target matrix, deploy gate): App auth on a harness,
 * and further instances (own config, own jobdirs) that talk to the first one's fake GitHub.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createGitHub } from '../../src/adapters/github/index.js';
import { createBackend } from '../../src/adapters/schedulers/index.js';
import type { Config } from '../../src/config/config.js';
import { startHarness, type Harness } from './botHarness.js';
import type { FakeGitHub } from './fakeGithub.js';

export const APP_ID = 77;
const FAST = { retryBaseMs: 1, retries: 1, throttle: false };

let appKey: string | undefined;
function key(): string {
  appKey ??= generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  }).privateKey;
  return appKey;
}

/** Re-point the harness's config (and the adapters built from it): App auth, and `change` applied. */
export function reconfigure(h: Harness, change: (c: Config) => Config = (c) => c): void {
  const keyFile = path.join(h.root, 'app.pem');
  writeFileSync(keyFile, key(), { mode: 0o600 });
  const config = change({
    ...h.config,
    github: { ...h.config.github, app_id: APP_ID, private_key_file: keyFile },
  });
  h.config = config;
  h.deps.config = config;
  h.deps.github = createGitHub(config, h.deps.logger, {}, FAST);
  h.deps.backend = createBackend(config, h.deps.logger, h.deps.jobdirs, h.deps.account);
}

/** Another instance (`yaml` appended to the harness's base site.yaml) on the same fake GitHub as `first`. */
export async function startInstance(
  first: Harness,
  instance: string,
  yaml: string,
  change: (c: Config) => Config = (c) => c,
): Promise<Harness> {
  const h = await startHarness(yaml);
  await h.fake.stop(); // its own fake is not used
  const fake: FakeGitHub = first.fake;
  h.fake = fake;
  h.gitRoot = first.gitRoot;
  h.stop = async () => {};
  reconfigure(h, (c) =>
    change({ ...c, instance, github: { ...c.github, api_url: first.config.github.api_url } }),
  );
  return h;
}
