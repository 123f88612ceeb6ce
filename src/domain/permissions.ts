/**
 * Who may do what. `permissions.command|build|deploy` list logins and `org/team` slugs; an empty list
 * means nobody (the safe default). Logins compare case-insensitively, as GitHub's do.
 */
import type { GitHubApi, RepoRef } from '../adapters/github/index.js';

export type Permission = 'command' | 'build' | 'deploy';

export function isBotAccount(login: string, botLogin?: string): boolean {
  return (
    login.endsWith('[bot]') || (botLogin !== undefined && login.toLowerCase() === botLogin.toLowerCase())
  );
}

/** Pure part: does `login` appear in the list directly? Returns the team slugs still to check. */
export function matchLogin(login: string, allowed: readonly string[]): { allowed: boolean; teams: string[] } {
  const lower = login.toLowerCase();
  if (allowed.some((entry) => !entry.includes('/') && entry.toLowerCase() === lower)) {
    return { allowed: true, teams: [] };
  }
  return { allowed: false, teams: allowed.filter((entry) => entry.includes('/')) };
}

export async function hasPermission(
  github: GitHubApi,
  repo: RepoRef,
  login: string,
  allowed: readonly string[],
): Promise<boolean> {
  const direct = matchLogin(login, allowed);
  if (direct.allowed) return true;
  for (const slug of direct.teams) {
    const [org, team] = slug.split('/') as [string, string];
    if (await github.isTeamMember(repo, org, team, login)) return true;
  }
  return false;
}
