/**
 * /metrics on the status page, in the Prometheus text format: the jobs, deploys and parked dirs as the
 * job dirs say now, and the poller's ticks and scheduler calls from its metrics file
 * (src/store/metrics.ts). The job histograms are computed from the job dirs at each scrape, so they
 * shrink when `hpcbot gc` removes old dirs, which Prometheus treats as a counter reset.
 */
import { collectStatus, type Located } from '../cli/status.js';
import { readHeartbeat } from '../store/heartbeat.js';
import { LATENCY_BUCKETS, readPollerMetrics, type HistogramData } from '../store/metrics.js';
import { readDeploys, scanJobs } from './model.js';

/** Upper bounds in seconds for the job waits (command to submission, submission to start). */
export const WAIT_BUCKETS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600, 86400];

type Labels = Record<string, string>;
interface Sample {
  suffix?: string;
  labels?: Labels;
  value: number;
}
interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter' | 'histogram';
  samples: Sample[];
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function labelText(labels: Labels | undefined): string {
  const pairs = Object.entries(labels ?? {});
  return pairs.length ? `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
}

/** Pure: the families in the Prometheus text exposition format. */
export function exposition(families: Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) out.push(`${f.name}${s.suffix ?? ''}${labelText(s.labels)} ${s.value}`);
  }
  return out.join('\n') + '\n';
}

/** Pure: histogram samples from per-bucket counts (the last one for +Inf). */
function histogramSamples(bounds: number[], h: HistogramData, labels: Labels = {}): Sample[] {
  let cumulative = 0;
  const samples = h.counts.map((n, i) => {
    cumulative += n;
    return {
      suffix: '_bucket',
      labels: { ...labels, le: i < bounds.length ? String(bounds[i]) : '+Inf' },
      value: cumulative,
    };
  });
  return [
    ...samples,
    { suffix: '_sum', labels, value: h.sum },
    { suffix: '_count', labels, value: cumulative },
  ];
}

/** Pure: a histogram of `values` (seconds). */
export function histogramOf(bounds: number[], values: number[]): HistogramData {
  const counts = bounds.map(() => 0).concat(0);
  for (const v of values) {
    const i = bounds.findIndex((b) => v <= b);
    counts[i === -1 ? bounds.length : i]! += 1;
  }
  return { counts, sum: values.reduce((a, b) => a + b, 0) };
}

const seconds = (from: string | undefined, to: string | undefined) =>
  from && to ? Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000) : undefined;
const timestamp = (iso: string | undefined) => (iso ? Date.parse(iso) / 1000 : undefined);

function count<T>(items: T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

export async function renderMetrics(located: Located, now: Date): Promise<string> {
  const status = await collectStatus(located, now);
  const root = status.jobdirs;
  const jobs = scanJobs(root);
  const deploys = readDeploys(root);
  const poller = await readPollerMetrics(root);
  const ingest = (await readHeartbeat(root, 'poller'))?.ingest;
  const families: Family[] = [];
  const gaugeOf = (name: string, help: string, samples: Sample[]) =>
    families.push({ name, help, type: 'gauge', samples });
  const defined = (samples: Array<Sample | undefined>) => samples.filter((s): s is Sample => s !== undefined);
  const ts = (value: number | undefined, labels?: Labels) =>
    value === undefined ? undefined : { value, labels };

  gaugeOf(
    'hpcbot_process_up',
    'Whether the process has a fresh heartbeat on this host (1) or not (0).',
    (['server', 'poller'] as const).map((p) => ({
      labels: { process: p },
      value: status.processes[p].liveness === 'alive' ? 1 : 0,
    })),
  );
  const byJob = count(jobs, (j) => JSON.stringify([j.stage, j.nodeType, j.backend]));
  gaugeOf(
    'hpcbot_jobs',
    'Job directories by stage, node type and backend.',
    [...byJob].map(([key, value]) => {
      const [stage, node_type, backend] = JSON.parse(key) as string[];
      return { labels: { stage: stage!, node_type: node_type!, backend: backend! }, value };
    }),
  );
  const finished = jobs.filter(
    (j) => j.finishedAt || ['finished', 'cancelled', 'lost', 'failed'].includes(j.stage),
  );
  gaugeOf(
    'hpcbot_jobs_finished',
    'Jobs that ended, by outcome (result status, or the stage for jobs without one), as the job dirs kept.',
    [...count(finished, (j) => j.outcome ?? j.stage)].map(([outcome, value]) => ({
      labels: { outcome },
      value,
    })),
  );
  const waits = (
    from: (j: (typeof jobs)[number]) => string | undefined,
    to: (j: (typeof jobs)[number]) => string | undefined,
  ) => jobs.map((j) => seconds(from(j), to(j))).filter((s): s is number => s !== undefined);
  families.push({
    name: 'hpcbot_job_command_to_submission_seconds',
    help: 'From the job being prepared for a command to its submission to the scheduler.',
    type: 'histogram',
    samples: histogramSamples(
      WAIT_BUCKETS,
      histogramOf(
        WAIT_BUCKETS,
        waits(
          (j) => j.created,
          (j) => j.submittedAt,
        ),
      ),
    ),
  });
  families.push({
    name: 'hpcbot_job_submission_to_start_seconds',
    help: 'From submission to the job starting to run.',
    type: 'histogram',
    samples: histogramSamples(
      WAIT_BUCKETS,
      histogramOf(
        WAIT_BUCKETS,
        waits(
          (j) => j.submittedAt,
          (j) => j.startedAt,
        ),
      ),
    ),
  });
  gaugeOf('hpcbot_parked_dirs', 'Event and job directories given up on (parked with an error).', [
    { value: status.parked.length },
  ]);
  gaugeOf('hpcbot_retrying_dirs', 'Directories waiting for a retry after an error.', [
    { value: status.retrying.length },
  ]);
  gaugeOf('hpcbot_queue_entries', 'Entries in the pending-work index.', [{ value: status.queue }]);
  gaugeOf(
    'hpcbot_deploys',
    'Deployed build targets by status (uploading, uploaded), from the deploy records.',
    [...count(deploys, (d) => d.status)].map(([s, value]) => ({ labels: { status: s }, value })),
  );
  gaugeOf('hpcbot_deploy_artefacts', 'Artefacts of the deploy records, by outcome.', [
    { labels: { outcome: 'uploaded' }, value: deploys.reduce((n, d) => n + d.uploaded, 0) },
    { labels: { outcome: 'refused' }, value: deploys.reduce((n, d) => n + d.refused, 0) },
  ]);
  gaugeOf(
    'hpcbot_scheduler_last_ok_timestamp_seconds',
    'When the scheduler last answered the poller (Unix time).',
    defined([ts(timestamp(status.backend?.lastOk))]),
  );
  gaugeOf(
    'hpcbot_scheduler_last_error_timestamp_seconds',
    'When a scheduler call of the poller last failed (Unix time).',
    defined([ts(timestamp(status.backend?.lastError?.at))]),
  );
  if (ingest && ingest.mode !== 'webhook') {
    gaugeOf(
      'hpcbot_ingest_lag_seconds',
      'Pull mode: from delivery at GitHub to stored, for the last delivery a pull stored.',
      defined([ts(ingest.lagMs === undefined ? undefined : ingest.lagMs / 1000)]),
    );
    gaugeOf(
      'hpcbot_ingest_last_pull_timestamp_seconds',
      "Pull mode: when the poller last listed the App's deliveries (Unix time).",
      defined([ts(timestamp(ingest.lastPullAt))]),
    );
  }
  if (poller) {
    families.push(
      {
        name: 'hpcbot_poller_ticks_total',
        help: 'Poller ticks.',
        type: 'counter',
        samples: [{ value: poller.ticks.total }],
      },
      {
        name: 'hpcbot_poller_tick_failures_total',
        help: 'Poller ticks that failed as a whole.',
        type: 'counter',
        samples: [{ value: poller.ticks.failed }],
      },
      {
        name: 'hpcbot_poller_tick_duration_seconds',
        help: 'How long a poller tick took.',
        type: 'histogram',
        samples: histogramSamples(LATENCY_BUCKETS, poller.ticks.duration),
      },
    );
    gaugeOf(
      'hpcbot_poller_last_tick_timestamp_seconds',
      'When the last tick ended (Unix time).',
      defined([ts(timestamp(poller.ticks.lastAt))]),
    );
    gaugeOf(
      'hpcbot_poller_last_success_timestamp_seconds',
      'When the last tick that did not fail ended (Unix time).',
      defined([ts(timestamp(poller.ticks.lastSuccessAt))]),
    );
    const github = Object.entries(poller.github?.calls ?? {}).sort(([a], [b]) => a.localeCompare(b));
    families.push({
      name: 'hpcbot_github_calls_total',
      help: 'GitHub API calls of the poller by route and HTTP status (0: no answer), after retries.',
      type: 'counter',
      samples: github.map(([key, value]) => {
        const at = key.lastIndexOf(' ');
        return { labels: { route: key.slice(0, at), status: key.slice(at + 1) }, value };
      }),
    });
    gaugeOf(
      'hpcbot_github_rate_limit_remaining',
      'x-ratelimit-remaining of the last GitHub answer the poller had.',
      defined([ts(poller.github?.rateLimitRemaining)]),
    );
    const calls = Object.entries(poller.scheduler).sort(([a], [b]) => a.localeCompare(b));
    families.push(
      {
        name: 'hpcbot_scheduler_call_duration_seconds',
        help: 'Latency of the poller calls to the scheduler (sbatch, squeue/sacct, scancel ...), by call.',
        type: 'histogram',
        samples: calls.flatMap(([call, c]) => histogramSamples(LATENCY_BUCKETS, c.latency, { call })),
      },
      {
        name: 'hpcbot_scheduler_call_failures_total',
        help: 'Scheduler calls that failed, by call.',
        type: 'counter',
        samples: calls.map(([call, c]) => ({ labels: { call }, value: c.failures })),
      },
    );
  }
  return exposition(families);
}
