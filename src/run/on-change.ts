/**
 * --on-change: an operator's hook after a pass that changed files (e.g.
 * restart services the hints name). The changed paths arrive on stdin, each
 * followed by a NUL byte (`xargs -0`, `read -d ''`): a file name can hold a
 * newline, so a line per path would let a master name forge entries. The
 * target's root is `.`.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../report/logger.js';

const HOOK_TIMEOUT_MS = 120_000;

/** What the hook reads on stdin. */
export function onChangeInput(changedPaths: readonly string[]): string {
  return changedPaths.map((path) => `${path === '' ? '.' : path}\0`).join('');
}

export function runOnChange(command: string, changedPaths: readonly string[], logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'inherit', 'inherit'], timeout: HOOK_TIMEOUT_MS });
    child.on('error', (err) => {
      logger.warn({ msg: '--on-change command could not start', command, error: err.message });
      resolve();
    });
    child.on('exit', (code, signal) => {
      if (code !== 0) logger.warn({ msg: '--on-change command failed', command, code, signal });
      resolve();
    });
    child.stdin.on('error', () => undefined); // the hook may not read its input
    child.stdin.end(onChangeInput(changedPaths));
  });
}
