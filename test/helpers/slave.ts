/**
 * A slave's directories for CLI suites (daemon, commands, status): a master
 * tree, a target, a state dir, the flag file in a directory of its own (a
 * flag inside the state dir would make the daemon's flag watcher fire on
 * every pass), and slave-sync.log outside the state dir (the log does not
 * create its directory). `cleanup` removes them after the test: pass a
 * deferrer's function so they go after the processes that use them.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { makeTempDir, type TreeSpec, writeTree } from './sshd.js';

export interface SlaveDirs {
  readonly base: string;
  readonly source: string;
  readonly target: string;
  readonly stateDir: string;
  readonly flagFile: string;
  readonly logFile: string;
}

export const SMALL_TREE: TreeSpec = { 'conf.d/local.ini': '[signer]\n', 'serverconf.xml': '<conf/>\n' };

export async function slaveDirs(cleanup: (step: () => Promise<unknown>) => void, prefix: string, tree: TreeSpec = SMALL_TREE): Promise<SlaveDirs> {
  const base = await makeTempDir(prefix);
  cleanup(() => fs.rm(base, { recursive: true, force: true }));
  const dirs = {
    base,
    source: path.join(base, 'master'),
    target: path.join(base, 'target'),
    stateDir: path.join(base, 'state'),
    flagFile: path.join(base, 'flagdir', 'sync-disabled'),
    logFile: path.join(base, 'slave-sync.log'),
  };
  await Promise.all([dirs.target, path.dirname(dirs.flagFile)].map((d) => fs.mkdir(d, { recursive: true })));
  await writeTree(dirs.source, tree);
  return dirs;
}

/**
 * Cleanup steps run last-in first-out after the test (before the test's own
 * t.after hooks registered earlier); every step runs even if one fails, and
 * the failures are reported together.
 */
export function deferrer(t: TestContext): (step: () => Promise<unknown>) => void {
  const steps: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const step of steps.reverse()) await step().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });
  return (step) => void steps.push(step);
}
