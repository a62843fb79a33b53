/**
 * A child process for the lock takeover race: each message from the parent
 * is one round; the child takes the pass lock in `dir`, claims a marker file
 * exclusively while it holds the lock (a second holder finds the marker
 * there), holds for `holdMs`, then releases and answers.
 */
import { closeSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { acquireLock } from '../../src/state/lock.js';

interface Round {
  readonly round: number;
  readonly dir: string;
  readonly holdMs: number;
  /** The lock's test hook: pause between judging a lock stale and removing it. */
  readonly hook?: string;
}

process.on('message', (msg: Round) => {
  void contend(msg).then(
    (answer) => process.send!(answer),
    (err: unknown) => process.send!({ round: msg.round, error: String(err) }),
  );
});

async function contend({ round, dir, holdMs, hook }: Round): Promise<{ round: number; overlapped: boolean }> {
  if (hook) process.env.XROAD_SYNC_TEST_HOOK = hook;
  else delete process.env.XROAD_SYNC_TEST_HOOK;
  const lock = await acquireLock(dir, 'sync', { waitMs: 20_000 });
  const marker = join(dir, 'holder');
  let overlapped = false;
  let fd: number | undefined;
  try {
    fd = openSync(marker, 'wx');
  } catch {
    overlapped = true;
  }
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  if (fd !== undefined) {
    closeSync(fd);
    unlinkSync(marker);
  }
  await lock.release();
  return { round, overlapped };
}
