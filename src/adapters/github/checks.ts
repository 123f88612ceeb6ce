/**
 * Check runs (GitHub App only) and commit statuses (what a personal token can write instead). Each call is
 * one request; the exactly-once bookkeeping (intent before, id after) is the caller's, as for comments.
 */
import type { Auth, Clients } from './auth.js';
import type { DryRunChecks } from './dryRun.js';
import { checkNumber, GitHubError, ref } from './errors.js';
import type { ChecksApi, ListedCheckRun } from './types.js';

/** Pages of 100 runs read at most when looking for a lost check run: a commit with 1000 runs is searched whole. */
const MAX_FIND_PAGES = 10;
/** Pages of 100 runs read at most for the target matrix and the deploy gate (1000 runs: 6 times the largest fleet). */
export const MAX_LIST_PAGES = 10;

export function checksApi(auth: Auth, { call }: Clients, dryRun: DryRunChecks | undefined): ChecksApi {
  const surface = auth.kind === 'token' ? 'statuses' : 'checks';
  return {
    checkSurface: () => surface,

    async createCheckRun(repo, headSha, run) {
      checkSha(headSha);
      if (dryRun) return dryRun.createCheckRun(repo, headSha, run);
      return call(`create the check run "${run.name}" on ${ref(repo)}@${headSha}`, repo, async (c) => {
        const { data } = await c.rest.checks.create({
          owner: repo.owner,
          repo: repo.repo,
          head_sha: headSha,
          ...run,
        });
        return { id: Number(data.id) };
      });
    },

    async updateCheckRun(repo, checkRunId, run) {
      checkNumber(checkRunId, 'check run id');
      if (dryRun) return dryRun.updateCheckRun(repo, checkRunId, run);
      await call(`update the check run ${checkRunId} in ${ref(repo)}`, repo, (c) =>
        c.rest.checks.update({ owner: repo.owner, repo: repo.repo, check_run_id: checkRunId, ...run }),
      );
    },

    async findCheckRun(repo, headSha, name, externalId) {
      checkSha(headSha);
      if (dryRun) return dryRun.findCheckRun(repo, headSha, name, externalId);
      return call(`list the check runs "${name}" of ${ref(repo)}@${headSha}`, repo, async (c) => {
        const pages = c.paginate.iterator(c.rest.checks.listForRef, {
          owner: repo.owner,
          repo: repo.repo,
          ref: headSha,
          check_name: name,
          filter: 'all',
          per_page: 100,
        });
        let read = 0;
        for await (const page of pages) {
          const hit = page.data.find((r) => r.name === name && r.external_id === externalId);
          if (hit) return Number(hit.id);
          if (++read >= MAX_FIND_PAGES) break;
        }
        return undefined;
      });
    },

    async listCheckRuns(repo, sha) {
      checkSha(sha);
      if (dryRun) return dryRun.listCheckRuns(repo, sha);
      return call(`list the check runs of ${ref(repo)}@${sha}`, repo, async (c) => {
        const pages = c.paginate.iterator(c.rest.checks.listForRef, {
          owner: repo.owner,
          repo: repo.repo,
          ref: sha,
          filter: 'latest',
          per_page: 100,
        });
        const runs: ListedCheckRun[] = [];
        let read = 0;
        for await (const page of pages) {
          for (const r of page.data)
            runs.push({
              id: Number(r.id),
              name: r.name,
              status: r.status as ListedCheckRun['status'],
              conclusion: r.conclusion as ListedCheckRun['conclusion'],
              ...(r.html_url ? { htmlUrl: r.html_url } : {}),
              ...(r.app?.id !== undefined ? { appId: Number(r.app.id) } : {}),
              ...(r.output.title ? { title: r.output.title } : {}),
              ...(r.output.summary ? { summary: r.output.summary } : {}),
            });
          if (++read >= MAX_LIST_PAGES)
            return { runs, complete: !/rel="next"/.test(page.headers.link ?? '') };
        }
        return { runs, complete: true };
      });
    },

    async createCommitStatus(repo, sha, status) {
      checkSha(sha);
      if (dryRun) return dryRun.createCommitStatus(repo, sha, status);
      await call(`set the commit status "${status.context}" on ${ref(repo)}@${sha}`, repo, (c) =>
        c.rest.repos.createCommitStatus({ owner: repo.owner, repo: repo.repo, sha, ...status }),
      );
    },
  };
}

/** A full commit SHA (SHA-1 or SHA-256); it ends up in a URL and, in dry run, in a path. */
function checkSha(sha: string): void {
  if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(sha))
    throw new GitHubError(`invalid commit SHA ${JSON.stringify(sha.slice(0, 80))}`, undefined, false);
}
