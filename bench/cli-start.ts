/**
 * CLI start-up benchmark: `npm run bench:cli` (needs `npm run build` first).
 *
 * Runs the installed entry point (`node bin/hpcbot.mjs`, the compiled CLI in dist/) as a user does,
 * each command in its own process, and prints the median wall time of N runs (default 10) beside a
 * bare `node -e 0` measured in the same rounds. The rounds alternate the commands, so that background
 * load falls on all of them alike. Goals: `--help`, `config check` and `status` within 0.3 s of bare
 * node, `poll --once` on an empty jobdirs within 0.6 s, `status` on 10,000 job dirs under 1 s.
 * `status` rows are of a jobdirs a poller has run on (its heartbeat names the site.yaml it accepted);
 * on one where nothing ran yet, status validates site.yaml itself, as `config check` does.
 *
 * Options (after `--`): --runs N, --jobs N (job dirs for the big status row, default 10000), --keep.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { heartbeatPath, type Heartbeat } from '../src/store/heartbeat.js';
import { newState, STATE_FILE, transition, type DirState } from '../src/store/state.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'hpcbot.mjs');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

interface Row {
  label: string;
  args: string[];
  /** Seconds over bare node (or absolute seconds, for the big status row). */
  goal?: { over?: number; absolute?: number };
  times: number[];
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { env, cwd: ROOT, maxBuffer: 64 * 1024 * 1024 }, (err, _out, stderr) => {
      if (err) reject(new Error(`${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(Number(process.hrtime.bigint() - start) / 1e9);
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function writeSite(dir: string, jobdirs: string): Promise<string> {
  const file = path.join(dir, `site-${path.basename(jobdirs)}.yaml`);
  await fs.writeFile(
    file,
    `instance: bench\njobdirs: ${jobdirs}\nserver:\n  host: 127.0.0.1\n  port: 1\ngithub:\n  dry_run: true\n`,
  );
  return file;
}

/**
 * The heartbeat a poller that ran on `site` and has stopped since leaves behind: `status` takes its
 * word that this exact site.yaml is valid instead of validating it again (which loads zod).
 */
async function stoppedPoller(jobdirs: string, site: string): Promise<void> {
  const text = await fs.readFile(site, 'utf8');
  const pid = Number(execFileSync(process.execPath, ['-p', 'process.pid'], { encoding: 'utf8' }).trim());
  const at = new Date().toISOString();
  const hb: Heartbeat = {
    process: 'poller',
    pid, // exited by now
    host: os.hostname(),
    startedAt: at,
    updatedAt: at,
    config: { source: site, digest: createHash('sha256').update(text).digest('hex') },
  };
  await fs.mkdir(path.dirname(heartbeatPath(jobdirs, 'poller')), { recursive: true });
  await fs.writeFile(heartbeatPath(jobdirs, 'poller'), JSON.stringify(hb, null, 2) + '\n');
}

/**
 * `jobs` job dirs in the real layout (state files in the real shape, written plainly: this is setup): events of PRs, each with one run of 2 node types x 2 repos,
 * most finished, some running, a few parked with an error; one delivery claim per event.
 */
async function syntheticJobdirs(root: string, jobs: number): Promise<void> {
  const now = new Date();
  const nodes = ['zen2', 'zen4'];
  const repos = ['eessi.io-2023.06-software', 'eessi.io-2023.06-compat'];
  const perEvent = nodes.length * repos.length;
  const events = Math.ceil(jobs / perEvent);
  await fs.mkdir(path.join(root, 'deliveries'), { recursive: true });
  await fs.mkdir(path.join(root, 'queue'), { recursive: true });
  const writeOne = async (e: number) => {
    const pr = 1 + Math.floor(e / 5);
    const delivery = `bench-${e}`;
    const rel = path.join('2026.01', 'acme', 'software-layer', `pr_${pr}`, `event_${delivery}`);
    const eventDir = path.join(root, rel);
    await fs.mkdir(eventDir, { recursive: true });
    const event = transition(
      newState('event', 'received', { event: 'issue_comment', action: 'created', generation: 1 }, now),
      'done',
      now,
    );
    await fs.writeFile(path.join(eventDir, STATE_FILE), JSON.stringify(event, null, 2) + '\n');
    await fs.writeFile(path.join(root, 'deliveries', delivery), rel + '\n');
    for (const [i, node] of nodes.entries())
      for (const [j, repo] of repos.entries()) {
        const n = e * perEvent + i * repos.length + j;
        if (n >= jobs) return;
        const dir = path.join(eventDir, 'run_001', node, repo);
        await fs.mkdir(dir, { recursive: true });
        let state: DirState<unknown> = newState('job', 'prepared', { submit_id: `s${n}` }, now);
        state = transition(state, n % 50 === 0 ? 'running' : 'finished', now);
        if (n % 500 === 7)
          state = {
            ...transition(state, 'failed', now),
            last_error: { message: 'sbatch: error', at: now.toISOString() },
          };
        await fs.writeFile(path.join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
      }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < events) await writeOne(next++);
    }),
  );
}

async function main(): Promise<void> {
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
    process.stderr.write('bench/cli-start.ts measures the compiled CLI: run `npm run build` first\n');
    process.exit(1);
  }
  const runs = arg('runs', 10);
  const jobs = arg('jobs', 10_000);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-bench-cli-'));
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('HPCBOT_')),
  );
  env.XDG_CONFIG_HOME = path.join(tmp, 'xdg');
  const empty = await writeSite(tmp, path.join(tmp, 'empty'));
  // Its own jobdirs: `poll --once` on `empty` leaves a heartbeat that would vouch for the file.
  const fresh = await writeSite(tmp, path.join(tmp, 'fresh'));
  const ranRoot = path.join(tmp, 'ran');
  const ran = await writeSite(tmp, ranRoot);
  await stoppedPoller(ranRoot, ran);
  const bigRoot = path.join(tmp, 'big');
  process.stderr.write(`writing ${jobs} synthetic job dirs ...\n`);
  await syntheticJobdirs(bigRoot, jobs);
  const big = await writeSite(tmp, bigRoot);
  await stoppedPoller(bigRoot, big);

  const rows: Row[] = [
    { label: 'node -e 0', args: ['-e', '0'], times: [] },
    { label: 'hpcbot --help', args: [BIN, '--help'], goal: { over: 0.3 }, times: [] },
    {
      label: 'hpcbot config check',
      args: [BIN, 'config', 'check', '-c', empty],
      goal: { over: 0.3 },
      times: [],
    },
    { label: 'hpcbot status', args: [BIN, 'status', '-c', ran], goal: { over: 0.3 }, times: [] },
    {
      label: 'hpcbot status (nothing ran yet: validates site.yaml)',
      args: [BIN, 'status', '-c', fresh],
      goal: { over: 0.6 },
      times: [],
    },
    {
      label: 'hpcbot poll --once (empty jobdirs)',
      args: [BIN, 'poll', '--once', '-c', empty],
      goal: { over: 0.6 },
      times: [],
    },
    {
      label: `hpcbot status (${jobs} job dirs)`,
      args: [BIN, 'status', '-c', big],
      goal: { absolute: 1 },
      times: [],
    },
  ];
  for (const row of rows) await run(row.args, env); // warm the file cache; not counted
  for (let i = 0; i < runs; i++) for (const row of rows) row.times.push(await run(row.args, env));

  const bare = median(rows[0]!.times);
  const table = [
    '| command | median s | over `node -e 0` | goal | met |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map((r) => {
      const m = median(r.times);
      const over = m - bare;
      const goal =
        r.goal?.over !== undefined
          ? `+${r.goal.over} s`
          : r.goal?.absolute !== undefined
            ? `< ${r.goal.absolute} s`
            : '';
      const met =
        r.goal?.over !== undefined
          ? over <= r.goal.over
          : r.goal?.absolute !== undefined
            ? m < r.goal.absolute
            : undefined;
      return `| ${r.label} | ${m.toFixed(3)} | ${r === rows[0] ? '' : `+${over.toFixed(3)}`} | ${goal} | ${met === undefined ? '' : met ? 'yes' : 'NO'} |`;
    }),
  ];
  const [l1, l5, l15] = os.loadavg().map((x) => x.toFixed(2));
  process.stdout.write(
    `${table.join('\n')}\n\nmedian of ${runs} runs each; Node ${process.version}, ${os.cpus().length} CPUs, load average ${l1}, ${l5}, ${l15}\n`,
  );
  if (process.argv.includes('--keep')) process.stderr.write(`kept ${tmp}\n`);
  else await fs.rm(tmp, { recursive: true, force: true });
}

await main();
