/**
 * Taking over a stale lock is atomic: processes that meet the same stale
 * lock at the same instant never both hold it. Real processes (locks are
 * between processes), a test hook that pauses each of them between judging
 * the lock stale and removing it (so the race happens every round, not once
 * in hundreds), and rounds without the pause for the natural timing.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CONTENDER = fileURLToPath(new URL('../helpers/lock-contender.js', import.meta.url));
const CONTENDERS = 4;

interface Answer {
  readonly round: number;
  readonly overlapped?: boolean;
  readonly error?: string;
}

function ask(child: ChildProcess, message: object, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from contender ${child.pid} within ${timeoutMs} ms`)), timeoutMs);
    child.once('message', (answer: Answer) => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}

/** A lock left by a process that is gone: our pid, but another start time and boot. */
const staleLock = (round: number) => JSON.stringify({ pid: process.pid, start: '1', boot: 'another-boot', purpose: 'sync', since: `round ${round}` }) + '\n';

test(`a stale lock met by ${CONTENDERS} processes at once is held by one at a time (paused between judging and removing it, then natural timing)`, {
  timeout: 180_000,
}, async (t) => {
  const dir = mkdtempSync('/tmp/xroad-sync-takeover-');
  const children = Array.from({ length: CONTENDERS }, () => fork(CONTENDER, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  t.after(() => {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const rounds = [
    ...Array.from({ length: 30 }, () => ({ hook: 'pause@lock-takeover', holdMs: 30 })),
    ...Array.from({ length: 60 }, () => ({ hook: undefined, holdMs: 2 })),
  ];
  let overlaps = 0;
  const failed: string[] = [];
  for (const [round, { hook, holdMs }] of rounds.entries()) {
    writeFileSync(`${dir}/sync.lock`, staleLock(round));
    const answers = await Promise.all(
      children.map((child) => {
        const answer = ask(child, {}, 30_000);
        child.send({ round, dir, holdMs, hook });
        return answer;
      }),
    );
    for (const a of answers) if (a.error) failed.push(`round ${round}: ${a.error}`);
    if (answers.some((a) => a.overlapped)) {
      overlaps++;
      failed.push(`round ${round}${hook ? ' (paused)' : ''}: two contenders held the lock at once`);
    }
    assert.equal(existsSync(`${dir}/sync.lock`), false, `round ${round}: the lock is released`);
  }
  t.diagnostic(`${rounds.length} rounds, ${overlaps} with two holders`);
  assert.deepEqual(failed.slice(0, 10), [], `${overlaps} of ${rounds.length} rounds had two holders`);
});
