/** Pull requests, team membership, where and how to clone, and who the credentials are. */
import type { Auth, Clients } from './auth.js';
import type { DryRunComments } from './dryRun.js';
import { checkNumber, checkRepo, ref, statusOf } from './errors.js';
import type { PullsApi } from './types.js';

export function pullsApi(
  apiUrl: string,
  auth: Auth,
  clients: Clients,
  dryRun: DryRunComments | undefined,
): PullsApi {
  const { call } = clients;
  return {
    async getPullRequest(repo, prNumber) {
      checkNumber(prNumber, 'pull request number');
      const local = await dryRun?.pullRequest(repo, prNumber);
      if (local) return local;
      return call(`read pull request ${ref(repo)}#${prNumber}`, repo, async (c) => {
        const { data } = await c.rest.pulls.get({
          owner: repo.owner,
          repo: repo.repo,
          pull_number: prNumber,
        });
        return {
          number: data.number,
          state: data.state === 'open' ? 'open' : 'closed',
          merged: data.merged ?? data.merged_at != null,
          title: data.title,
          headSha: data.head.sha,
          headRef: data.head.ref,
          headRepoFullName: data.head.repo?.full_name ?? null,
          baseSha: data.base.sha,
          baseRef: data.base.ref,
          author: data.user?.login ?? '',
        };
      });
    },

    async isTeamMember(repo, org, teamSlug, login) {
      if (!org || !teamSlug || !login) return false;
      return call(`check whether ${login} is in team ${org}/${teamSlug}`, repo, async (c) => {
        try {
          const { data } = await c.rest.teams.getMembershipForUserInOrg({
            org,
            team_slug: teamSlug,
            username: login,
          });
          return data.state === 'active';
        } catch (err) {
          if (statusOf(err) === 404) return false;
          throw err;
        }
      });
    },

    cloneUrl(owner, repo) {
      checkRepo(owner, repo);
      return dryRun?.localRepo(owner, repo) ?? cloneUrlFor(apiUrl, owner, repo);
    },

    async gitCredentials(repo) {
      if (dryRun?.localRepo(repo.owner, repo.repo)) return undefined;
      return clients.gitCredentials(repo);
    },

    async whoAmI() {
      if (auth.kind === 'none') return undefined;
      return clients.callUnscoped('authenticate', async (c) => {
        if (auth.kind === 'token') return (await c.rest.users.getAuthenticated()).data.login;
        const { data } = await c.rest.apps.getAuthenticated();
        return `app ${data?.slug ?? auth.appId}`;
      });
    },
  };
}

/** `https://api.github.com` → github.com; `https://HOST/api/v3` (GHES) → HOST; anything else: below api_url. */
export function cloneUrlFor(apiUrl: string, owner: string, repo: string): string {
  checkRepo(owner, repo);
  const base = apiUrl.replace(/\/+$/, '');
  const u = new URL(base);
  const suffix = `/${owner}/${repo}.git`;
  if (u.hostname === 'api.github.com') return `https://github.com${suffix}`;
  // GitHub Enterprise Cloud with data residency: api.SUBDOMAIN.ghe.com → SUBDOMAIN.ghe.com
  const ghe = /^api\.([a-z0-9-]+\.ghe\.com)$/i.exec(u.hostname);
  if (ghe && (u.pathname === '/' || u.pathname === '')) return `https://${ghe[1]}${suffix}`;
  if (/^\/api\/v3\/?$/.test(u.pathname)) return `${u.protocol}//${u.host}${suffix}`;
  return `${base}${suffix}`;
}
