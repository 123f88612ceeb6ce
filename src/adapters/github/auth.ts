/**
 * Who the bot is to GitHub: a GitHub App, a personal token from an env var, or nothing; and which Octokit
 * each call uses. Secrets (private key, tokens) never reach the logger or an error message.
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createAppAuth } from '@octokit/auth-app';
import type { Config } from '../../config/config.js';
import type { Logger } from '../../log.js';
import type { BotOctokit, NewOctokit } from './client.js';
import { checkRepo, ErrorMapper, GitHubError, ref } from './errors.js';
import type { RepoRef } from './types.js';

/** The github section of site.yaml or its environment is unusable (missing env var, unreadable key). */
export class GitHubConfigError extends Error {
  override readonly name = 'GitHubConfigError';
}

export type Auth =
  | { kind: 'app'; appId: number; privateKey: string }
  | { kind: 'token'; token: string; envName: string }
  | { kind: 'none' };

/** Username for HTTPS git with an installation token; GitHub accepts it for personal tokens too. */
const GIT_USERNAME = 'x-access-token';

export function resolveAuth(config: Config, env: NodeJS.ProcessEnv): Auth {
  const gh = config.github;
  if (gh.app_id !== undefined || gh.private_key_file !== undefined) {
    if (gh.app_id === undefined)
      throw new GitHubConfigError(
        `${config.source}: github.private_key_file is set but github.app_id is not`,
      );
    if (gh.private_key_file === undefined)
      throw new GitHubConfigError(
        `${config.source}: github.app_id is set but github.private_key_file is not`,
      );
    let pem: string;
    try {
      pem = readFileSync(gh.private_key_file, 'utf8');
    } catch (err) {
      throw new GitHubConfigError(
        `cannot read github.private_key_file ${gh.private_key_file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    try {
      createPrivateKey(pem);
    } catch {
      // The parser's message is not included: it could quote part of the file.
      throw new GitHubConfigError(
        `github.private_key_file ${gh.private_key_file} is not a PEM private key (download a new one from the App's settings)`,
      );
    }
    return { kind: 'app', appId: gh.app_id, privateKey: pem };
  }
  if (gh.token_env !== undefined) {
    const token = env[gh.token_env]?.trim();
    if (!token)
      throw new GitHubConfigError(
        `github.token_env names the environment variable ${gh.token_env}, but it is not set (or empty)`,
      );
    return { kind: 'token', token, envName: gh.token_env };
  }
  return { kind: 'none' };
}

/** Runs calls with the right Octokit; whatever they throw comes out as a GitHubError. */
export interface Clients {
  /** With the client for `repo`: its installation's for an App, the shared one otherwise. */
  call<T>(what: string, repo: RepoRef, fn: (c: BotOctokit) => Promise<T>): Promise<T>;
  /** With the client tied to no repo: the App's own (JWT) client, or the shared one. */
  callUnscoped<T>(what: string, fn: (c: BotOctokit) => Promise<T>): Promise<T>;
  /** Credentials for HTTPS git: the token, an installation token, or undefined without credentials. */
  gitCredentials(repo: RepoRef): Promise<{ username: string; password: string } | undefined>;
}

/**
 * One Octokit per installation (App auth), or one for everything (token / none). Each installation's
 * Octokit has @octokit/auth-app, which caches the installation token for 59 of its 60 minutes and then
 * requests a new one.
 */
export function createClients(auth: Auth, apiUrl: string, newOctokit: NewOctokit, log: Logger): Clients {
  const errors = new ErrorMapper(apiUrl, auth);
  const installationClients = new Map<number, BotOctokit>();
  const repoInstallations = new Map<string, Promise<number>>();
  let sharedClient: BotOctokit | undefined;
  let appClient: BotOctokit | undefined;

  function appAuthOptions(installationId?: number): Record<string, unknown> {
    if (auth.kind !== 'app') throw new Error('not an App');
    return {
      authStrategy: createAppAuth,
      auth: { appId: auth.appId, privateKey: auth.privateKey, ...(installationId ? { installationId } : {}) },
    };
  }

  function unscoped(): BotOctokit {
    if (auth.kind === 'app') return (appClient ??= newOctokit(appAuthOptions()));
    return (sharedClient ??= newOctokit(auth.kind === 'token' ? { auth: auth.token } : {}));
  }

  async function installationIdFor(repo: RepoRef): Promise<number> {
    if (repo.installationId !== null) return repo.installationId;
    const key = `${repo.owner}/${repo.repo}`;
    let pending = repoInstallations.get(key);
    if (!pending) {
      const client = unscoped();
      pending = errors
        .wrap(`look up the App installation of ${key}`, repo, async () => {
          const { data } = await client.rest.apps.getRepoInstallation({ owner: repo.owner, repo: repo.repo });
          return data.id;
        })
        .catch((err: unknown) => {
          repoInstallations.delete(key);
          throw err;
        });
      repoInstallations.set(key, pending);
    }
    return pending;
  }

  async function client(repo: RepoRef): Promise<BotOctokit> {
    checkRepo(repo.owner, repo.repo);
    if (auth.kind !== 'app') return unscoped();
    const id = await installationIdFor(repo);
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new GitHubError(`invalid installation id ${id}`, undefined, false);
    let c = installationClients.get(id);
    if (!c) {
      c = newOctokit(appAuthOptions(id));
      installationClients.set(id, c);
      log.debug({ installationId: id }, 'new installation client');
    }
    return c;
  }

  const call = <T>(what: string, repo: RepoRef, fn: (c: BotOctokit) => Promise<T>): Promise<T> =>
    errors.wrap(what, repo, async () => fn(await client(repo)));

  return {
    call,
    callUnscoped: (what, fn) => errors.wrap(what, undefined, () => fn(unscoped())),

    async gitCredentials(repo) {
      if (auth.kind === 'none') return undefined;
      if (auth.kind === 'token') return { username: GIT_USERNAME, password: auth.token };
      return call(`get an installation token for ${ref(repo)}`, repo, async (c) => {
        const a = (await c.auth({ type: 'installation' })) as { token?: unknown };
        if (typeof a.token !== 'string')
          throw new GitHubError('auth-app returned no token', undefined, false);
        return { username: GIT_USERNAME, password: a.token };
      });
    },
  };
}
