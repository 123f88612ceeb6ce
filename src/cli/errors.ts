/**
 * How an `hpcbot` command ends when something goes wrong: a clear message on stderr, never a stack
 * trace (unless HPCBOT_DEBUG=1), and an exit code that says what to fix:
 *   2  usage: a bad argument or option value, a site.yaml that does not validate;
 *   1  failure: the command could not do its job (a missing file, the server not answering, ...).
 * Every command loads this module, so it imports nothing but commander (which main.ts loads anyway).
 */
import { CommanderError } from 'commander';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** What the user typed is wrong (an option value, an argument); exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * Errors about the configuration (site.yaml, the environment), which the user must edit: exit code 2.
 * Matched by name so that this module need not load the modules that define them.
 */
const CONFIG_ERRORS = new Set(['ConfigError', 'GitHubConfigError', 'LogSettingError']);

/** Errors of the language itself are bugs, never the user's doing: they get the debugging hint. */
const PROGRAMMING_ERRORS = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError];

export const DEBUG_HINT = 'run with HPCBOT_DEBUG=1 for the stack';

export interface ErrorReport {
  exitCode: number;
  /** For stderr, newline-terminated; empty when the message was printed already (commander's). */
  text: string;
}

/** Pure: the exit code and message for an error that ended the command `command` (e.g. "gc"). */
export function describeError(err: unknown, command: string, debug = false): ErrorReport {
  if (err instanceof CommanderError) {
    // commander printed its message (or the help) itself.
    return { exitCode: err.exitCode === 0 ? 0 : EXIT_USAGE, text: '' };
  }
  const prefix = command ? `hpcbot ${command}: ` : 'hpcbot: ';
  if (!(err instanceof Error)) {
    return { exitCode: EXIT_FAILURE, text: `${prefix}unexpected error: ${String(err)}\n${DEBUG_HINT}\n` };
  }
  const usage = err instanceof UsageError || CONFIG_ERRORS.has(err.name);
  const exitCode = usage ? EXIT_USAGE : EXIT_FAILURE;
  if (debug) return { exitCode, text: `${err.stack ?? err.message}\n` };
  // A ConfigError is a list of `file:line: key.path: problem` lines, complete as it is.
  if (err.name === 'ConfigError') return { exitCode, text: `${err.message}\n` };
  if (!usage && PROGRAMMING_ERRORS.some((cls) => err.constructor === cls))
    return { exitCode, text: `${prefix}unexpected error: ${err.name}: ${err.message}\n${DEBUG_HINT}\n` };
  return { exitCode, text: `${prefix}${err.message}\n` };
}

/** Print the report of `err` and end the process (stderr is synchronous for files, pipes and TTYs). */
export function exitWithError(err: unknown, command: string): never {
  const { exitCode, text } = describeError(err, command, process.env.HPCBOT_DEBUG === '1');
  process.stderr.write(text);
  process.exit(exitCode);
}

/**
 * `hpcbot ... | head`: once the reader has gone, further output has nowhere to go; end quietly
 * instead of with an unhandled EPIPE. Errors that arise after the command's action returned (in a
 * running server or poller) end the process with the same one-line report.
 */
export function installProcessHandlers(currentCommand: () => string): void {
  // Stacks that name the TypeScript sources (dist/ has source maps), when someone asked for stacks.
  if (process.env.HPCBOT_DEBUG === '1') process.setSourceMapsEnabled(true);
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    exitWithError(err, currentCommand());
  });
  const fatal = (err: unknown) => exitWithError(err, currentCommand());
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}
