/**
 * Ingest benchmark: `npm run bench:ingest`.
 *
 * Sends signed, real webhook payloads (@octokit/webhooks-examples) to loopback only, at concurrency
 * 1, 8 and 32, bounded in count and in time, to two servers that run as child processes (so that
 * this load generator does not share their event loop):
 *
 *   ours  the real `hpcbot server` (src/cli/main.ts) on a fresh temp jobdirs
 *   bare  a bare node:http server that only verifies the HMAC and writes + fsyncs one file per
 *         delivery: the practical limit of "durably store, then acknowledge" on this machine
 *
 * It prints events/s and p50/p95/p99 latency for each, our events/s as a ratio of bare, and checks
 * that what was stored equals what was acknowledged (it counts the event files on disk).
 *
 * Ours acknowledges a delivery once it is in its journal, and builds the event dir and the queue entry
 * afterwards. After each of our runs the generator waits until every acknowledged delivery is in the
 * pending-work index (`settle ms`, the longest wait of the level) before anything else runs, so that
 * bare never runs beside our catching up; `sustained/s` counts that wait as part of our time.
 *
 * Options (after `--`): --count N (max deliveries per level and server, default 6000), --seconds S
 * (max seconds per level and server, default 2; split into 3 alternating rounds), --concurrency
 * 1,8,32, --keep (keep the temp directory).
 * Internal: `--bare-server <dir>` runs the bare server (used as the child process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { promises as fs, constants as fsConstants } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeDelivery, payloads } from '../tests/support/payloads.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const SECRET = 'bench-secret-' + randomUUID();
const HOST = '127.0.0.1';

// ------------------------------------------------------------------------------------------------
// The bare server (child process).

async function bareServer(dir: string): Promise<void> {
  const secret = process.env.BENCH_SECRET ?? '';
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const given = Buffer.from(String(req.headers['x-hub-signature-256'] ?? ''));
        const want = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
        if (given.length !== want.length || !timingSafeEqual(given, want)) {
          res.writeHead(401).end();
          return;
        }
        const delivery = String(req.headers['x-github-delivery']).replace(/[^A-Za-z0-9-]/g, '');
        const handle = await fs.open(
          path.join(dir, `${delivery}.json`),
          fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
          0o644,
        );
        try {
          await handle.writeFile(body);
          await handle.sync();
        } finally {
          await handle.close();
        }
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"stored":true}');
      })().catch((err: unknown) => {
        res.writeHead(500).end(String(err));
      });
    });
  });
  server.listen(0, HOST, () => {
    const addr = server.address();
    process.stdout.write(
      `listening on http://${HOST}:${typeof addr === 'object' && addr ? addr.port : 0}/\n`,
    );
  });
}

// ------------------------------------------------------------------------------------------------
// The load generator.

interface RunResult {
  sent: number;
  acknowledged: number;
  failed: number;
  seconds: number;
  latenciesMs: number[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const bodies = [
  ['pull_request', payloads.prOpened()],
  ['pull_request', payloads.prLabeled()],
  ['pull_request', payloads.prSynchronize()],
  ['pull_request', payloads.prClosed()],
  ['issue_comment', payloads.commentOnPr()],
] as const;

/** Bodies and signatures are computed once: the generator should spend its CPU on sending, not signing. */
const signedBodies = bodies.map(([event, payload]) => makeDelivery(event, payload, { secret: SECRET }));

function request(url: string, agent: http.Agent, i: number): Promise<number> {
  const d = signedBodies[i % signedBodies.length]!;
  const headers = {
    ...d.headers,
    'x-github-delivery': randomUUID(),
    'content-length': String(d.body.length),
  };
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(d.body);
  });
}

async function load(
  url: string,
  concurrency: number,
  maxCount: number,
  maxSeconds: number,
): Promise<RunResult> {
  if (!['127.0.0.1', '[::1]', 'localhost'].includes(new URL(url).hostname)) {
    throw new Error(`refusing to send load to ${url}: loopback only`);
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latenciesMs: number[] = [];
  let sent = 0;
  let acknowledged = 0;
  let failed = 0;
  const started = performance.now();
  const deadline = started + maxSeconds * 1000;
  const worker = async () => {
    while (sent < maxCount && performance.now() < deadline) {
      const i = sent++;
      const t0 = performance.now();
      try {
        const status = await request(url, agent, i);
        if (status >= 200 && status < 300) acknowledged++;
        else failed++;
      } catch {
        failed++;
      }
      latenciesMs.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { sent, acknowledged, failed, seconds, latenciesMs: latenciesMs.sort((a, b) => a - b) };
}

/** CPU seconds (user + system) a child has used so far, from /proc (Linux); undefined elsewhere. */
async function cpuSeconds(pid: number | undefined): Promise<number | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (USER_HZ 100)
  } catch {
    return undefined;
  }
}

/** Runs per concurrency level and server; their counts, times and latencies are added up. */
const ROUNDS = 3;

function merge(runs: RunResult[]): RunResult {
  return {
    sent: runs.reduce((s, r) => s + r.sent, 0),
    acknowledged: runs.reduce((s, r) => s + r.acknowledged, 0),
    failed: runs.reduce((s, r) => s + r.failed, 0),
    seconds: runs.reduce((s, r) => s + r.seconds, 0),
    latenciesMs: runs.flatMap((r) => r.latenciesMs).sort((a, b) => a - b),
  };
}

interface ChildServer {
  proc: ChildProcess;
  url: string;
}

/** Every child started, so that all of them are killed whatever happens. */
const children: ChildProcess[] = [];

async function startChild(args: string[], env: NodeJS.ProcessEnv, urlFrom: RegExp): Promise<ChildServer> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  return await new Promise((resolve, reject) => {
    const onData = (c: Buffer) => {
      out += c.toString();
      const m = out.match(urlFrom);
      if (m) {
        proc.stdout!.off('data', onData);
        proc.stdout!.resume();
        proc.stderr!.resume();
        resolve({ proc, url: m[1]! });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    proc.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${out}`)));
    setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 30000).unref();
  });
}

/** Wait until `dir` holds `want` entries (temp files aside); the time it took, in ms. */
async function waitForEntries(dir: string, want: number, timeoutMs = 120_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const have = (await fs.readdir(dir)).filter((n) => !n.startsWith('.tmp-')).length;
    if (have >= want) return performance.now() - started;
    if (performance.now() - started > timeoutMs) {
      throw new Error(`only ${have} of ${want} acknowledged deliveries reached ${dir} in ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function countFiles(root: string, match: (name: string) => boolean): Promise<number> {
  let n = 0;
  const walk = async (dir: string) => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(path.join(dir, e.name));
      else if (match(e.name)) n++;
    }
  };
  await walk(root);
  return n;
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

function args(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

async function main(): Promise<void> {
  const bareIdx = process.argv.indexOf('--bare-server');
  if (bareIdx >= 0) return await bareServer(process.argv[bareIdx + 1]!);

  const maxCount = Number(args('count', '6000'));
  const maxSeconds = Number(args('seconds', '2'));
  const levels = args('concurrency', '1,8,32').split(',').map(Number);
  const keep = process.argv.includes('--keep');

  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-bench-'));
  const bareDir = path.join(tmp, 'bare');
  await fs.mkdir(bareDir);
  const siteYaml = path.join(tmp, 'site.yaml');
  await fs.writeFile(
    siteYaml,
    [
      'instance: bench',
      'jobdirs: jobdirs',
      'server:',
      `  host: ${HOST}`,
      '  port: 0',
      'github:',
      '  dry_run: true',
      '  webhook_secret_env: BENCH_WEBHOOK_SECRET',
      '',
    ].join('\n'),
  );
  const env = {
    ...process.env,
    BENCH_SECRET: SECRET,
    BENCH_WEBHOOK_SECRET: SECRET,
    HPCBOT_LOG_LEVEL: 'warn',
  };
  try {
    await measure(tmp, bareDir, siteYaml, env, maxCount, maxSeconds, levels, keep);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    if (!keep) await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function measure(
  tmp: string,
  bareDir: string,
  siteYaml: string,
  env: NodeJS.ProcessEnv,
  maxCount: number,
  maxSeconds: number,
  levels: number[],
  keep: boolean,
): Promise<void> {
  // Our server logs its address at info level (and nothing per request).
  const ours = await startChild(
    ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'main.ts'), 'server', '--config', siteYaml],
    { ...env, HPCBOT_LOG_LEVEL: 'info' },
    /listening on (http:\/\/127\.0\.0\.1:\d+\/webhook)/,
  );
  const bare = await startChild(
    ['--import', 'tsx', SELF, '--bare-server', bareDir],
    env,
    /listening on (\S+)/,
  );

  process.stdout.write(
    `ingest benchmark: ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}, node ${process.version}, ` +
      `load average ${loadAverage()} at the start\n` +
      `payloads: ${bodies.length} real examples, ${Math.round(
        bodies.reduce((s, [e, p]) => s + makeDelivery(e, p).body.length, 0) / bodies.length / 1024,
      )} KiB average; per level and server: at most ${maxCount} deliveries or ${maxSeconds} s, in ${ROUNDS} alternating rounds\n` +
      `cpu ms/ev: CPU time (user + system) of the server process per acknowledged delivery, during the run\n` +
      `settle ms: after our run, the longest wait until every acknowledged delivery was in jobdirs/queue\n` +
      `settle cpu ms/ev: our CPU time during that wait, per acknowledged delivery (building the event dirs)\n` +
      `sustained/s: acknowledged / (run time + settle time); for bare, the same as events/s\n\n`,
  );
  const rows: string[][] = [
    [
      'server',
      'conc',
      'acked',
      'events/s',
      'p50 ms',
      'p95 ms',
      'p99 ms',
      'cpu ms/ev',
      'settle ms',
      'settle cpu ms/ev',
      'sustained/s',
      'ratio',
      'sustained ratio',
    ],
  ];
  const queueDir = path.join(tmp, 'jobdirs', 'queue');
  let oursAcked = 0;
  let ok = true;
  const ratios: string[] = [];
  try {
    // Warm both up (JIT, first directories), outside the measured runs.
    oursAcked += (await load(ours.url, 4, 100, 2)).acknowledged;
    await waitForEntries(queueDir, oursAcked);
    await load(bare.url, 4, 100, 2);
    let storedOurs = await countFiles(tmp + '/jobdirs', (n) => n === 'event.json');
    let storedBare = await countFiles(bareDir, (n) => n.endsWith('.json'));
    for (const c of levels) {
      // Alternate short runs of bare and ours, so that both see the same background load.
      const runs: Record<'bare' | 'ours', RunResult[]> = { bare: [], ours: [] };
      const cpu = { bare: 0, ours: 0 };
      let settleMs = 0;
      let settleTotalMs = 0;
      let settleCpu = 0;
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, srv] of [
          ['bare', bare],
          ['ours', ours],
        ] as const) {
          const before = await cpuSeconds(srv.proc.pid);
          const run = await load(srv.url, c, maxCount / ROUNDS, maxSeconds / ROUNDS);
          runs[name].push(run);
          const after = await cpuSeconds(srv.proc.pid);
          cpu[name] += (after ?? NaN) - (before ?? NaN);
          if (name === 'ours') {
            oursAcked += run.acknowledged;
            const waited = await waitForEntries(queueDir, oursAcked);
            settleMs = Math.max(settleMs, waited);
            settleTotalMs += waited;
            settleCpu += ((await cpuSeconds(srv.proc.pid)) ?? NaN) - (after ?? NaN);
          }
        }
      }
      const b = merge(runs.bare);
      const o = merge(runs.ours);
      const nowOurs = await countFiles(tmp + '/jobdirs', (n) => n === 'event.json');
      const nowBare = await countFiles(bareDir, (n) => n.endsWith('.json'));
      for (const [name, r, stored] of [
        ['bare', b, nowBare - storedBare],
        ['ours', o, nowOurs - storedOurs],
      ] as const) {
        if (r.failed > 0 || stored !== r.acknowledged) {
          ok = false;
          process.stdout.write(
            `!! ${name} c=${c}: acknowledged ${r.acknowledged}, stored ${stored}, failed ${r.failed}\n`,
          );
        }
      }
      storedOurs = nowOurs;
      storedBare = nowBare;
      const rate = (r: RunResult) => r.acknowledged / r.seconds;
      const sustained = { bare: rate(b), ours: o.acknowledged / (o.seconds + settleTotalMs / 1000) };
      const ratio = rate(o) / rate(b);
      ratios.push(
        `c=${c} ${(ratio * 100).toFixed(0)}% (sustained ${((sustained.ours / sustained.bare) * 100).toFixed(0)}%)`,
      );
      for (const [name, r] of [
        ['bare', b],
        ['ours', o],
      ] as const) {
        const cpuMs = (cpu[name] * 1000) / r.acknowledged;
        rows.push([
          name,
          String(c),
          String(r.acknowledged),
          rate(r).toFixed(0),
          percentile(r.latenciesMs, 50).toFixed(2),
          percentile(r.latenciesMs, 95).toFixed(2),
          percentile(r.latenciesMs, 99).toFixed(2),
          Number.isFinite(cpuMs) ? cpuMs.toFixed(2) : '?',
          name === 'ours' ? settleMs.toFixed(0) : '',
          name === 'ours' ? ((settleCpu * 1000) / r.acknowledged).toFixed(2) : '',
          sustained[name].toFixed(0),
          name === 'ours' ? `${(ratio * 100).toFixed(0)}%` : '',
          name === 'ours' ? `${((sustained.ours / sustained.bare) * 100).toFixed(0)}%` : '',
        ]);
      }
    }
  } finally {
    ours.proc.kill('SIGKILL');
    bare.proc.kill('SIGKILL');
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(r.map((v, i) => v.padStart(widths[i]!)).join('  ') + '\n');
  process.stdout.write(
    `\nload average ${loadAverage()} at the end; stored == acknowledged: ${ok ? 'yes' : 'NO'}\n`,
  );
  process.stdout.write(
    `ours / bare: ${ratios.join(', ')} (goal: >= 100% at c=8 and c=32)${keep ? `; kept ${tmp}` : ''}\n`,
  );
  if (!ok) process.exitCode = 1;
}

await main();
