/**
 * `hpcbot config check [--online]`: validate site.yaml, check it against this machine (and with
 * --online against GitHub, the upload target and the scheduler), then print the effective config.
 * Every problem is one line `file:line: key.path: what is wrong` and the exit code is 2.
 */
import YAML from 'yaml';
import {
  configErrorAt,
  describeSecretsSources,
  loadConfig,
  secretEnvNames,
  type Config,
} from '../config/config.js';
import { checkSite } from '../config/siteCheck.js';

export async function configCheckCommand(opts: { config: string; online?: boolean }): Promise<void> {
  const config = loadConfig(opts.config);
  const { errors, warnings } = await checkSite(config);
  if (errors.length > 0) throw configErrorAt(config, errors);
  if (opts.online) {
    const { checkOnline } = await import('../config/onlineCheck.js');
    const problems = await checkOnline(config);
    if (problems.length > 0) throw configErrorAt(config, problems);
  }
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const effective = redactSecretValues({ ...config, secrets: describeSecretsSources(config) }, config);
  process.stdout.write(`# ${config.source}: OK\n`);
  process.stdout.write(redactSecretValues(YAML.stringify(effective), config));
}

/**
 * Second fence for `config check`: site.yaml never holds a secret, but if a value in it happens to
 * contain the value of a secret env var (a pasted secret), it must still not reach a terminal or a
 * CI log. Strings are redacted in the object (so the YAML stays valid), then the text once more.
 */
function redactSecretValues<T>(value: T, config: Config): T {
  const secrets = secretEnvNames(config)
    .map((name) => process.env[name])
    .filter((v): v is string => Boolean(v));
  const redact = (s: string) => secrets.reduce((out, secret) => out.split(secret).join('[redacted]'), s);
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return redact(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [redact(k), walk(x)]));
    return v;
  };
  return walk(value) as T;
}
