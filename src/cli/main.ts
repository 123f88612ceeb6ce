#!/usr/bin/env node
/**
 * The `hpcbot` command. This module only declares the subcommands: each action imports the module it
 * needs when it runs, so that `--help` or `status` never load octokit, express or the AWS SDK.
 * Errors end in one line on stderr and exit code 2 (usage, bad config) or 1 (failure); see errors.ts.
 */
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { exitWithError, installProcessHandlers } from './errors.js';

/** The one place the site.yaml path is decided: --config, else $HPCBOT_CONFIG, else config/site.yaml. */
function configOption() {
  return new Option('-c, --config <path>', 'site.yaml to use')
    .env('HPCBOT_CONFIG')
    .default('config/site.yaml');
}

/** How `start` runs its children: this same file, with the same node options (e.g. `--import tsx`). */
const ENTRY = [...process.execArgv, fileURLToPath(import.meta.url)];

const program = new Command()
  .name('hpcbot')
  .description('Builds and deploys HPC software stacks from pull requests')
  .exitOverride();

program
  .command('server')
  .description('run the webhook endpoint (verifies and stores events, nothing else)')
  .addOption(configOption())
  .option('--insecure-skip-signature', 'DEVELOPMENT ONLY: accept unsigned deliveries')
  .action(async (opts: { config: string; insecureSkipSignature?: boolean }) => {
    await (await import('./processes.js')).serverCommand(opts);
  });

program
  .command('poll')
  .description('advance pending work: on a cron schedule, or once')
  .addOption(configOption())
  .option('--once', 'run one tick, then exit')
  .option('--dir <path>', 'advance only this event or job directory, then exit')
  .option('--replay <path>', 'start a finished event over as a new run_NNN, then exit')
  // `start` prints the startup summary once, through its server; its poller stays quiet.
  .addOption(new Option('--no-summary', 'do not print the startup summary').hideHelp())
  .action(
    async (opts: { config: string; once?: boolean; dir?: string; replay?: string; summary: boolean }) => {
      process.exitCode = await (await import('./processes.js')).pollCommand(opts);
    },
  );

program
  .command('start')
  .description('run the server, the poller and the status page together (three processes)')
  .addOption(configOption())
  .action(async (opts: { config: string }) => {
    await (await import('./processes.js')).startCommand(opts, ENTRY);
  });

program
  .command('ui')
  .description('serve the status page and /metrics (read-only; ui.host, ui.port, ui.token_file)')
  .addOption(configOption())
  .action(async (opts: { config: string }) => {
    await (await import('./processes.js')).uiCommand(opts);
  });

program
  .command('status')
  .description('what the bot is doing, from jobdirs alone: processes, queue, jobs, failures, deliveries')
  .addOption(configOption())
  .option('--json', 'print the status as JSON')
  .action(async (opts: { config: string; json?: boolean }) => {
    await (await import('./status.js')).statusCommand(opts);
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
      process.exitCode = await (await import('./verify.js')).runVerifyCommand({ artefact, ...opts });
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
  .action(async (opts: { config: string; olderThan: string; dryRun?: boolean }) => {
    await (await import('./gc.js')).gcCommand(opts);
  });

program
  .command('sample-event')
  .description(
    'dry run only: create a sample PR in the dry-run store and send a signed bot: build comment to the server',
  )
  .addOption(configOption())
  .option('--comment <text>', 'the comment to send', 'bot: build for:arch=x86_64/generic')
  .action(async (opts: { config: string; comment: string }) => {
    process.exitCode = await (await import('./sampleEvent.js')).sampleEventCommand(opts);
  });

program
  .command('deliveries')
  .description("the App's webhook deliveries on GitHub (ingest.mode pull and both)")
  .command('recover')
  .description('store every delivery on GitHub that is not on disk (the server was down, a relay dropped it)')
  .addOption(configOption())
  .option('--since <age>', 'look back this far, such as 90m, 12h or 3d (default and most: ingest.horizon)')
  .action(async (opts: { config: string; since?: string }) => {
    await (await import('./deliveries.js')).deliveriesRecoverCommand(opts);
  });

const configCmd = program.command('config').description('site.yaml tools');

configCmd
  .command('check')
  .description('validate site.yaml against this machine and print the effective config (never a secret)')
  .addOption(configOption())
  .option('--online', 'also try GitHub authentication, the upload target and the scheduler')
  .action(async (opts: { config: string; online?: boolean }) => {
    await (await import('./configCheck.js')).configCheckCommand(opts);
  });

configCmd
  .command('import-eessi')
  .description("write a site.yaml equivalent to an EESSI bot's app.cfg, listing what it cannot map")
  .argument('<app_cfg>', "the EESSI bot's app.cfg")
  .option('--out <path>', 'write the site.yaml there (default: stdout)')
  .action(async (appCfg: string, opts: { out?: string }) => {
    await (await import('./importEessi.js')).importEessiCommand(appCfg, opts);
  });

// `hpcbot deploy ...` commands are registered here, one block each.
const deployCmd = program.command('deploy').description('deploy records');

deployCmd
  .command('forget')
  .description('remove the deploy records of a PR, so that deploy.policy once uploads them again')
  .argument('<pr>', 'the pull request number')
  .addOption(configOption())
  .option('--repo <owner/name>', 'the repository (default: the only one with deploy records for the PR)')
  .option('--target <target>', 'only this target: <node_type>/<repo_id> or the for: architecture')
  .action(async (pr: string, opts: { config?: string; repo?: string; target?: string }) => {
    await (await import('./deployForget.js')).deployForgetCommand(pr, opts);
  });

const serviceCmd = program.command('service').description('run the bot under systemd');

serviceCmd
  .command('install')
  .description(
    "write systemd units for server, poller and ui with this machine's paths; print the systemctl lines",
  )
  .addOption(configOption())
  .option('--user', 'user units in ~/.config/systemd/user (no root needed)')
  .option('--dir <path>', 'write the units here instead')
  .option('--entry <path>', "the hpcbot script the units run (default: this installation's bin/hpcbot.mjs)")
  .action(async (opts: { config: string; user?: boolean; dir?: string; entry?: string }) => {
    await (await import('./service.js')).serviceInstallCommand(opts);
  });

program
  .command('self-update')
  .description('update the bot from its git remote (self_update in site.yaml), or go back one release')
  .addOption(configOption())
  .option('--check', 'say whether the remote has a newer release')
  .option('--now', 'update now, if the new release passes config check and the smoke test')
  .option('--rollback', 'switch back to the release before the last update')
  .action(async (opts: { config: string; check?: boolean; now?: boolean; rollback?: boolean }) => {
    process.exitCode = await (await import('./selfUpdate.js')).selfUpdateCommand(opts);
  });

/** The subcommand that is running, e.g. "config check", for error messages. */
let running = '';
program.hook('preAction', (_program, action) => {
  const names: string[] = [];
  for (let c: Command | null = action; c && c !== program; c = c.parent) names.unshift(c.name());
  running = names.join(' ');
});
installProcessHandlers(() => running);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  exitWithError(err, running);
}
