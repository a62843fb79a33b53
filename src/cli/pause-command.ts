/** pause / resume: the protocol is src/pause/pause.ts; here options in, lines out. */
import { type PauseOptions, pauseAll, pauseContext, resumeAll } from '../pause/pause.js';
import { notice, printLine } from '../util/output.js';

export async function pauseCommand(opts: PauseOptions): Promise<number> {
  for (const line of await pauseAll(pauseContext(opts, notice))) printLine(line);
  return 0;
}

export async function resumeCommand(opts: PauseOptions & { now?: boolean } & Record<string, unknown>): Promise<number> {
  const resumed = await resumeAll(pauseContext(opts, notice));
  for (const line of resumed.lines) printLine(line);
  // --now: the pass run here is the latest word on the target.
  if (!opts.now) return resumed.exitCode;
  const { syncCommand } = await import('./sync-command.js');
  return syncCommand(opts);
}
