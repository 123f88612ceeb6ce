/**
 * Fault injection for crash tests: with HPCBOT_CRASH_POINT=<name> the process kills itself with
 * SIGKILL at that point, exactly like an operator's `kill -9` at the worst moment. Unset in production.
 */
export function crashPoint(name: string): void {
  if (process.env.HPCBOT_CRASH_POINT === name) process.kill(process.pid, 'SIGKILL');
}
