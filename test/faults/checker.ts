/**
 * The concurrent reader of the kill suite: while a pass runs (and is killed),
 * it reads every file and symlink of the target over and over; each read must
 * be the path's old version or its new one: same bytes and mode, or the same
 * link target. Never a mix, a truncation, or a temp file's 0600 mode. A path
 * may be missing only where the old or the new tree has no file there.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { TreeEntrySnapshot } from '../helpers/sshd.js';
import type { Snapshot } from './helpers.js';

const MISSING = 'missing';
const DIR = 'dir';

function digest(bytes: Buffer): string {
  return createHash('sha1').update(bytes).digest('hex');
}

/** What a reader may see at a path in a snapshot. */
function expected(e: TreeEntrySnapshot | undefined): string {
  if (!e) return MISSING;
  if (e.type === 'dir') return DIR;
  if (e.type === 'symlink') return `link:${e.linkTarget}`;
  if (e.type === 'file') {
    const c = e.content ?? '';
    const bytes = c.startsWith('base64:') ? Buffer.from(c.slice(7), 'base64') : Buffer.from(c, 'utf8');
    return `file:${digest(bytes)}:${e.mode.toString(8)}`;
  }
  return 'other';
}

/** One observation of a path, with O_NOFOLLOW so a symlink is seen as itself. */
async function observe(abs: string): Promise<string> {
  for (let attempt = 0; attempt < 3; attempt++) {
    let handle;
    try {
      handle = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return MISSING;
      if (code !== 'ELOOP') throw err;
      try {
        return `link:${await readlink(abs)}`;
      } catch (e2) {
        const c2 = (e2 as NodeJS.ErrnoException).code;
        if (c2 === 'ENOENT' || c2 === 'ENOTDIR') return MISSING;
        continue; // EINVAL: replaced by a non-link between open and readlink; look again
      }
    }
    try {
      const before = await handle.stat();
      if (before.isDirectory()) return DIR;
      if (!before.isFile()) return 'other';
      const bytes = await handle.readFile();
      const after = await handle.stat();
      // Mode from the same inode, after the read: an in-place chmod of an unchanged file is one of two states either way.
      return `file:${digest(bytes)}:${(after.mode & 0o7777).toString(8)}`;
    } finally {
      await handle.close();
    }
  }
  return 'unstable';
}

export interface CheckerReport {
  reads: number;
  sweeps: number;
  /** Reads that were neither the old nor the new version. */
  partial: Array<{ path: string; seen: string; allowed: string[] }>;
}

export class ConcurrentChecker {
  private readonly allowed = new Map<string, Set<string>>();
  readonly report: CheckerReport = { reads: 0, sweeps: 0, partial: [] };
  private stopped = false;
  private loop: Promise<void> | undefined;

  /** `before` and `after` are readTree snapshots (relative paths) of the old target and of what the new one must be. */
  constructor(
    private readonly root: string,
    before: Snapshot,
    after: Snapshot,
  ) {
    for (const p of new Set([...before.keys(), ...after.keys()])) {
      const [o, n] = [before.get(p), after.get(p)];
      const isLeaf = (e: TreeEntrySnapshot | undefined) => e !== undefined && e.type !== 'dir';
      if (!isLeaf(o) && !isLeaf(n)) continue;
      const set = new Set([expected(o), expected(n)]);
      // A file replaced by a directory (or the reverse) is absent for a moment between the two.
      if (!isLeaf(o) || !isLeaf(n)) set.add(MISSING);
      this.allowed.set(p, set);
    }
  }

  get paths(): number {
    return this.allowed.size;
  }

  /** One read of every path; violations are recorded, not thrown. */
  async sweep(): Promise<void> {
    for (const [rel, ok] of this.allowed) {
      const seen = await observe(path.join(this.root, rel));
      this.report.reads++;
      if (!ok.has(seen)) this.report.partial.push({ path: rel, seen, allowed: [...ok] });
    }
    this.report.sweeps++;
  }

  /** Sweep again and again until stop() or `maxMs`. */
  start(maxMs: number): void {
    const deadline = Date.now() + maxMs;
    this.loop = (async () => {
      while (!this.stopped && Date.now() < deadline) {
        await this.sweep();
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
  }

  async stop(): Promise<CheckerReport> {
    this.stopped = true;
    await this.loop;
    return this.report;
  }
}
