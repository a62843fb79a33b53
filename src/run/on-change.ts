/** --on-change: an operator's hook after a pass that changed files (e.g. restart services the hints name). */
import { spawn } from 'node:child_process';
import type { Logger } from '../report/logger.js';

const HOOK_TIMEOUT_MS = 120_000;

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
    child.stdin.end(changedPaths.join('\n') + '\n');
  });
}
