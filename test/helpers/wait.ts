/**
 * The one set of bounded waits for every suite: poll a condition until it
 * holds or a deadline passes. Nothing here waits without a limit.
 */
export { setTimeout as sleep } from 'node:timers/promises';

import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `cond` every `pollMs` until it holds: true, or false once `timeoutMs` has passed (checked once more at the end). */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, pollMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await sleep(pollMs);
  }
  return cond();
}

/**
 * Like `until`, but a timeout is a failure: rejects naming `what` (and
 * `detail()`, e.g. a daemon's output). Resolves with the milliseconds it took.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what = 'condition', detail?: () => string): Promise<number> {
  const started = Date.now();
  if (await until(cond, timeoutMs, 25)) return Date.now() - started;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `\n${detail()}` : ''}`);
}
