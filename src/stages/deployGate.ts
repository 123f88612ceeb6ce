/**
 * The fleet's state on a PR head, read from GitHub: one paginated list of the commit's check runs gives
 * the target matrix (`bot: status`) and the deploy gate. The gate's check run (`hpcbot/deploy-gate`) is
 * written when a job of this instance completes (jobCheck.ts), and only when what it says changed; the
 * same list tells whether it did, so an evaluation costs one list call and at most one write.
 */
import type { ListedCheckRun, RepoRef } from '../adapters/github/index.js';
import {
  decideGate,
  GATE_RUN_NAME,
  expandRequirement,
  parseRequirement,
  renderGateRefusal,
  renderGateRun,
  type GateDecision,
  type CellRequirement,
} from '../domain/deployGate.js';
import { codeSpan } from '../domain/markdown.js';
import { fleetRuns, type FleetRun } from '../domain/targetMatrix.js';
import type { StageDeps } from './context.js';

export interface Fleet {
  headSha: string;
  runs: FleetRun[];
  /** The gate run this App wrote on the commit, if any. */
  gateRun?: ListedCheckRun;
  complete: boolean;
}

/** Check runs are what the matrix and the gate are read from: they need an App and `reporting.checks`. */
export function readsChecks(deps: Pick<StageDeps, 'config' | 'github'>): boolean {
  return deps.config.reporting.checks && deps.github.checkSurface() === 'checks';
}

export async function readFleet(
  deps: Pick<StageDeps, 'config' | 'github'>,
  repo: RepoRef,
  headSha: string,
): Promise<Fleet> {
  const { runs, complete } = await deps.github.listCheckRuns(repo, headSha);
  const appId = deps.config.github.app_id;
  const gateRun = runs.find(
    (r) => r.name === GATE_RUN_NAME && (appId === undefined || r.appId === undefined || r.appId === appId),
  );
  return { headSha, runs: fleetRuns(runs, appId), ...(gateRun ? { gateRun } : {}), complete };
}

/** `deploy.require`, validated by the config schema. */
export function requirements(deps: Pick<StageDeps, 'config'>): CellRequirement[] {
  return deps.config.deploy.require.flatMap((text) => {
    const parsed = parseRequirement(text);
    return parsed.ok ? expandRequirement(parsed.requirement, deps.config.target_sets) : [];
  });
}

export function decide(deps: Pick<StageDeps, 'config'>, fleet: Fleet): GateDecision {
  return decideGate(requirements(deps), fleet.runs, fleet);
}

/**
 * Evaluate the gate at `headSha` and bring its check run up to date: created when the commit has none,
 * edited when its conclusion or summary changed, left alone otherwise. Nothing without `deploy.require`.
 */
export async function evaluateDeployGate(
  deps: Pick<StageDeps, 'config' | 'github' | 'logger'>,
  repo: RepoRef,
  headSha: string,
): Promise<GateDecision | undefined> {
  if (deps.config.deploy.require.length === 0 || !readsChecks(deps)) return undefined;
  const fleet = await readFleet(deps, repo, headSha);
  const decision = decide(deps, fleet);
  const run = renderGateRun(decision, deps.config.deploy.require);
  const known = fleet.gateRun;
  if (
    known?.status === 'completed' &&
    known.conclusion === run.conclusion &&
    (known.title ?? '') === run.output.title &&
    (known.summary ?? '') === run.output.summary
  )
    return decision;
  if (known) await deps.github.updateCheckRun(repo, known.id, run);
  else await deps.github.createCheckRun(repo, headSha, run);
  deps.logger.info(
    { repo: `${repo.owner}/${repo.repo}`, head: headSha, green: decision.green },
    'deploy gate evaluated',
  );
  return decision;
}

/** Why a deploy at `headSha` must wait for the gate, or undefined when it may go ahead (or there is no gate). */
export async function gateRefusal(
  deps: Pick<StageDeps, 'config' | 'github'>,
  repo: RepoRef,
  headSha: string,
): Promise<string | undefined> {
  const { config } = deps;
  if (config.deploy.require.length === 0) return undefined;
  if (!readsChecks(deps))
    return `deploy refused on instance ${codeSpan(config.instance)}: \`deploy.require\` is set, but the deploy gate reads check runs, which need a GitHub App and \`reporting.checks: true\``;
  const decision = decide(deps, await readFleet(deps, repo, headSha));
  return decision.green ? undefined : renderGateRefusal(decision, config.instance);
}
