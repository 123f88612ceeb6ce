/**
 * Pure parsing of PBS output (OpenPBS / PBS Professional and Torque) into the observations the stages
 * already know from Slurm: PENDING, RUNNING, COMPLETING, SUSPENDED while active; COMPLETED, FAILED,
 * CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL or FINISHED (ended, exit status not reported) when final.
 *
 * Sources: the qstat(1B) man pages of PBS Professional and Torque ("Job States"), OpenPBS
 * src/include/job.h (JOB_EXEC_* exit codes, JOB_SUBSTATE_*) and the Torque Administrator Guide
 * "Job Exit Status" (Torque supplied exit codes).
 */
import type { JobObservation } from './types.js';

export type PbsFlavour = 'pbspro' | 'torque';

/** One job as qstat -f shows it; attribute names as PBS spells them. */
export interface PbsJob {
  id: string;
  name?: string;
  /** One letter: Q H W T M R E S U B F C X. */
  state: string;
  substate?: number;
  exitStatus?: number;
  holdTypes?: string;
  variables: Record<string, string>;
}

export class PbsOutputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PbsOutputError';
  }
}

/** `qstat -f -F json` (PBS Pro / OpenPBS): `{"Jobs": {"<id>": {...}}}`; no `Jobs` key when no job matched. */
export function parseQstatJson(text: string): PbsJob[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new PbsOutputError(`qstat printed no valid JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null) throw new PbsOutputError('qstat JSON is not an object');
  const jobs = (doc as { Jobs?: unknown }).Jobs ?? {};
  if (typeof jobs !== 'object' || jobs === null)
    throw new PbsOutputError('qstat JSON "Jobs" is not an object');
  return Object.entries(jobs as Record<string, Record<string, unknown>>).map(([id, attrs]) => {
    const vars = attrs.Variable_List;
    const variables =
      typeof vars === 'object' && vars !== null
        ? Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, String(v)]))
        : typeof vars === 'string'
          ? parseVariableList(vars)
          : {};
    return job(id, (name) => attrs[name], variables);
  });
}

/**
 * `qstat -f` text (Torque, PBS Pro without -F, Slurm's Torque wrappers): a `Job Id: <id>` line, then one
 * indented `name = value` line per attribute; long values continue on following lines.
 */
export function parseQstatText(text: string): PbsJob[] {
  const jobs: PbsJob[] = [];
  let id: string | undefined;
  let attrs = new Map<string, string>();
  let last: string | undefined;
  const flush = () => {
    if (id === undefined) return;
    const a = attrs;
    jobs.push(job(id, (name) => a.get(name), parseVariableList(a.get('Variable_List') ?? '')));
  };
  for (const line of text.split('\n')) {
    const head = /^Job Id:\s*(\S+)/.exec(line);
    if (head) {
      flush();
      id = head[1]!;
      attrs = new Map();
      last = undefined;
      continue;
    }
    const attr = /^\s+([A-Za-z_][\w.]*) = (.*)$/.exec(line);
    if (attr && id !== undefined) {
      last = attr[1]!;
      attrs.set(last, attr[2]!.trim());
    } else if (last !== undefined && /^\s+\S/.test(line)) {
      attrs.set(last, attrs.get(last)! + line.trim());
    } else {
      last = undefined;
    }
  }
  flush();
  return jobs;
}

/** `A=1,B=x,y` is ambiguous in PBS itself; a comma starts a new variable only when `NAME=` follows. */
export function parseVariableList(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(/,(?=[A-Za-z_][A-Za-z0-9_]*=)/)) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

function job(id: string, get: (name: string) => unknown, variables: Record<string, string>): PbsJob {
  const state = String(get('job_state') ?? '').trim();
  if (!/^[A-Z]$/.test(state)) throw new PbsOutputError(`job ${id} has no job_state`);
  const num = (v: unknown) =>
    v === undefined || v === '' || !Number.isFinite(Number(v)) ? undefined : Number(v);
  const name = get('Job_Name');
  const substate = num(get('substate'));
  // PBS Pro spells it Exit_status, Torque exit_status.
  const exitStatus = num(get('Exit_status') ?? get('exit_status'));
  const holdTypes = get('Hold_Types');
  return {
    id,
    state,
    variables,
    ...(name !== undefined ? { name: String(name) } : {}),
    ...(substate !== undefined ? { substate } : {}),
    ...(exitStatus !== undefined ? { exitStatus } : {}),
    ...(holdTypes !== undefined ? { holdTypes: String(holdTypes) } : {}),
  };
}

/** OpenPBS job.h: history substates of a finished job. */
const SUBSTATE_TERMINATED = 91;

/** Negative exit codes the batch system sets itself (the job never ran to its own end). */
const SPECIAL_EXIT: Record<PbsFlavour, Record<number, string>> = {
  // OpenPBS src/include/job.h: JOB_EXEC_INITABT -4 (MOM restarted under the job), JOB_EXEC_RERUN_MS_FAIL -20
  // (mother superior connection failed), JOB_EXEC_KILL_VMEM -26, _MEM -27, _WALLTIME -29.
  pbspro: {
    [-4]: 'NODE_FAIL',
    [-20]: 'NODE_FAIL',
    [-26]: 'OUT_OF_MEMORY',
    [-27]: 'OUT_OF_MEMORY',
    [-29]: 'TIMEOUT',
  },
  // Torque "Job Exit Status": JOB_EXEC_INITABT -4, _INITRST -5, _INITRMG -6 (aborted on MOM init),
  // -10 memory limit, -11 walltime limit.
  torque: {
    [-4]: 'NODE_FAIL',
    [-5]: 'NODE_FAIL',
    [-6]: 'NODE_FAIL',
    [-10]: 'OUT_OF_MEMORY',
    [-11]: 'TIMEOUT',
  },
};

/** What a finished job's exit status and substate mean, as a Slurm-like state and `exit:signal`. */
export function finalStateOf(
  flavour: PbsFlavour,
  j: Pick<PbsJob, 'exitStatus' | 'substate'>,
): { state: string; exitCode?: string } {
  if (j.substate === SUBSTATE_TERMINATED) {
    return {
      state: 'CANCELLED',
      ...(j.exitStatus !== undefined ? { exitCode: exitCodeOf(j.exitStatus) } : {}),
    };
  }
  const status = j.exitStatus;
  if (status === undefined) return { state: 'FINISHED' };
  const exitCode = exitCodeOf(status);
  if (status === 0) return { state: 'COMPLETED', exitCode };
  if (status < 0) return { state: SPECIAL_EXIT[flavour][status] ?? 'FAILED', exitCode };
  // Above 256: the batch system killed the job with signal status-256. Torque does so for qdel of a
  // running job (271 = SIGTERM); PBS Pro marks its qdel by substate 91, so there it is a failure.
  if (status > 256) return { state: flavour === 'torque' ? 'CANCELLED' : 'FAILED', exitCode };
  return { state: 'FAILED', exitCode };
}

/** `exit:signal` as sacct prints it; negative PBS codes stay as they are. */
function exitCodeOf(status: number): string {
  return status > 256 ? `0:${status - 256}` : `${status}:0`;
}

const HOLD_REASON: Record<string, string> = { u: 'JobHeldUser', o: 'JobHeldAdmin', s: 'JobHeldAdmin' };

/** The observation of one job (pure). */
export function observationOf(flavour: PbsFlavour, j: PbsJob, jobId = j.id): JobObservation {
  switch (j.state) {
    case 'F': // PBS Pro: finished (history, qstat -x)
    case 'C': // Torque: completed (kept for keep_completed)
    case 'X': // PBS Pro: subjob expired
      return { jobId, final: true, ...finalStateOf(flavour, j) };
    case 'H': {
      const held = [...(j.holdTypes ?? 'u')].find((t) => HOLD_REASON[t]);
      return { jobId, state: 'PENDING', final: false, reason: HOLD_REASON[held ?? 'u']!, held: true };
    }
    case 'W': // waiting for its execution time (qsub -a)
      return { jobId, state: 'PENDING', final: false, reason: 'BeginTime', held: false };
    case 'Q':
    case 'T': // in transit to another queue or server
    case 'M': // moved to another server
      return { jobId, state: 'PENDING', final: false, held: false };
    case 'R':
    case 'B': // an array job has begun
      return { jobId, state: 'RUNNING', final: false, held: false };
    case 'E': // exiting after having run
      return { jobId, state: 'COMPLETING', final: false, held: false };
    case 'S':
    case 'U':
      return { jobId, state: 'SUSPENDED', final: false, held: false };
    default:
      return { jobId, state: `PBS_${j.state}`, final: false, held: false };
  }
}

/** The job id qsub printed: `<seq>[.<server>]`, as PBS Pro, Torque and Slurm's Torque wrapper print it. */
export function parseQsubOutput(out: string): string | undefined {
  const line = out.trim().split('\n').pop()?.trim() ?? '';
  return /^\d+(\.[A-Za-z0-9_.-]+)?$/.test(line) ? line : undefined;
}
