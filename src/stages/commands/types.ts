import type { CommandArgs } from '../../domain/commands.js';
import type { EventContext } from '../event.js';

export interface CommandContext extends EventContext {
  sender: string;
  args: CommandArgs;
  /** Idempotency key of this command within its event generation, e.g. `g0:cmd1`. */
  key: string;
}

/** Runs one command and returns its result as markdown for the reply comment. */
export type CommandHandler = (ctx: CommandContext) => Promise<string>;
