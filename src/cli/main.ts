/**
 * The `hpcbot` command: `server`, `poll`, `start` (both), `config check`.
 * A bad site.yaml prints every problem with file, line and key path, and exits with code 2.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import YAML from 'yaml';
import {
  ConfigError,
  configErrorAt,
  configPathFrom,
  describeSecretsSources,
  loadConfig,
  secretEnvNames,
  type Config,
} from '../config/config.js';
import { collectGarbage, formatGcReport, parseAge } from './gc.js';
import { createLogger } from '../log.js';
import { SAMPLE, sendSampleEvent } from '../ingest/sampleEvent.js';
import { loadWebhookSecret } from '../config/secrets.js';
import { startServer } from '../server.js';
import { checkSite } from '../config/siteCheck.js';
import { runPollerCommand } from '../poller.js';
import { runVerifyCommand } from './verify.js';

function configOption() {
  return new Option('-c, --config <path>', 'site.yaml to use (default: $HPCBOT_CONFIG or config/site.yaml)');
}

function load(opts: { config?: string }): Config {
  return loadConfig(configPathFrom(opts.config));
}

/** Load site.yaml and check it against this machine (secrets out of the jobs' reach, the job user). */
async function loadChecked(opts: { config?: string }): Promise<{ config: Config; warnings: string[] }> {
  const config = load(opts);
  const { errors, warnings } = await checkSite(config);
  if (errors.length > 0) throw configErrorAt(config, errors);
  return { config, warnings };
}

const program = new Command()
  .name('hpcbot')
  .description('Builds and deploys HPC software stacks from pull requests')
  .showHelpAfterError();

program
  .command('server')
  .description('run the webhook endpoint (verifies and stores events, nothing else)')
  .addOption(configOption())
  .option('--insecure-skip-signature', 'DEVELOPMENT ONLY: accept unsigned deliveries')
  .action(async (opts: { config?: string; insecureSkipSignature?: boolean }) => {
    const { config } = await loadChecked(opts);
    const logger = createLogger('server');
    let secret: string | undefined;
    if (opts.insecureSkipSignature) {
      logger.warn(
        '!!! --insecure-skip-signature: webhook signatures are NOT verified; never expose this port !!!',
      );
    } else {
      const loaded = await loadWebhookSecret(config);
      secret = loaded.secret;
      logger.info(
        { source: loaded.source },
        loaded.generated
          ? `generated a new webhook secret in ${loaded.source.replace(/^file /, '')}; enter it in the GitHub App settings`
          : `webhook secret from ${loaded.source}`,
      );
    }
    const server = await startServer({
      config,
      logger,
      secret,
      insecureSkipSignature: opts.insecureSkipSignature,
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.server.port;
    logger.info(
      `listening on http://${config.server.host}:${port}${config.server.webhook_path} (jobdirs ${config.jobdirs})`,
    );
    const stop = () => server.close(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });

program
  .command('poll')
  .description('advance pending work: on a cron schedule, or once')
  .addOption(configOption())
  .option('--once', 'run one tick, then exit')
  .option('--dir <path>', 'advance only this event or job directory, then exit')
  .option('--replay <path>', 'start a finished event over as a new run_NNN, then exit')
  .action(async (opts: { config?: string; once?: boolean; dir?: string; replay?: string }) => {
    const { config, warnings } = await loadChecked(opts);
    const logger = createLogger('poller');
    for (const w of warnings) logger.warn(w);
    process.exitCode = await runPollerCommand(config, logger, opts);
  });

program
  .command('start')
  .description('run the server and the poller together (two processes)')
  .addOption(configOption())
  .action(async (opts: { config?: string }) => {
    await loadChecked(opts); // fail fast, with exit code 2, before starting anything
    const self = fileURLToPath(import.meta.url);
    const extra = opts.config ? ['--config', opts.config] : [];
    // Started as `node --import tsx src/cli/main.ts` the loader is in execArgv; started through
    // bin/hpcbot.mjs it was registered in-process, so the children need it on their command line.
    const loader = process.execArgv.length > 0 ? process.execArgv : ['--import', import.meta.resolve('tsx')];
    let stopping = false;
    const commands = ['server', 'poll'];
    const children: ChildProcess[] = commands.map((cmd) =>
      spawn(process.execPath, [...loader, self, cmd, ...extra], { stdio: 'inherit' }),
    );
    const stopAll = () => {
      stopping = true;
      children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGTERM'));
    };
    process.on('SIGTERM', stopAll);
    process.on('SIGINT', stopAll);
    for (const [i, child] of children.entries()) {
      child.on('exit', (code, signal) => {
        // A child that finished its work (exit 0) leaves the other running; one that failed or was
        // killed takes the other down too, so that a supervisor restarts the pair.
        if (code === 0 || stopping) return;
        process.exitCode = code ?? 1;
        stopAll();
        if (signal) process.stderr.write(`hpcbot start: ${commands[i]} killed by ${signal}\n`);
      });
    }
  });

program
  .command('verify')
  .description("check an artefact's signature and provenance, and say who built it from what")
  .argument('<artefact>', 'the artefact file (its signature is <artefact>.sig)')
  .requiredOption('--allowed-signers <file>', "ssh-keygen allowed_signers file with the bot's public key")
  .option('--provenance <file>', 'provenance statement (default: <artefact>.provenance.json if present)')
  .option('--namespace <ns>', 'signature namespace (default: the instance named in the provenance)')
  .action(
    async (artefact: string, opts: { allowedSigners: string; provenance?: string; namespace?: string }) => {
      process.exitCode = await runVerifyCommand({ artefact, ...opts });
    },
  );

program
  .command('gc')
  .description(
    'prune old trash, delivery claims, unused mirrors and records of finished work; never an open PR',
  )
  .addOption(configOption())
  .requiredOption('--older-than <age>', 'age such as 30d, 12h or 90m')
  .option('--dry-run', 'only print what would be removed and freed, per category')
  .action(async (opts: { config?: string; olderThan: string; dryRun?: boolean }) => {
    const config = load(opts);
    const dryRun = opts.dryRun === true;
    const result = await collectGarbage(config, parseAge(opts.olderThan), dryRun);
    process.stdout.write(formatGcReport(result, dryRun));
  });

program
  .command('sample-event')
  .description(
    'dry run only: create a sample PR in the dry-run store and send a signed bot: build comment to the server',
  )
  .addOption(configOption())
  .option('--comment <text>', 'the comment to send', 'bot: build for:arch=x86_64/generic')
  .action(async (opts: { config?: string; comment: string }) => {
    const config = load(opts);
    const { status, body } = await sendSampleEvent(config, opts.comment);
    process.stdout.write(`server answered ${status} ${body}\n`);
    const store = path.join(config.jobdirs, 'dry-run', SAMPLE.owner, SAMPLE.repo, `issue_${SAMPLE.pr}`);
    process.stdout.write(`the bot's comments appear in ${store}/ within a few seconds\n`);
    process.stdout.write(
      `job directories: ${path.join(config.jobdirs, '<YYYY.MM>', SAMPLE.owner, SAMPLE.repo, `pr_${SAMPLE.pr}`)}/\n`,
    );
    if (status >= 300) process.exitCode = 1;
  });

const configCmd = program.command('config').description('site.yaml tools');
configCmd
  .command('check')
  .description('validate site.yaml and print the effective config (secrets are never in it)')
  .addOption(configOption())
  .action(async (opts: { config?: string }) => {
    const config = load(opts);
    const { errors, warnings } = await checkSite(config);
    if (errors.length > 0) throw configErrorAt(config, errors);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    const effective = redactSecretValues({ ...config, secrets: describeSecretsSources(config) }, config);
    process.stdout.write(`# ${config.source}: OK\n`);
    process.stdout.write(redactSecretValues(YAML.stringify(effective), config));
  });

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

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
