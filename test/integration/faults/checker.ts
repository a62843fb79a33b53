/**
 * The concurrent reader of the kill suite: while a pass runs (and is killed),
 * it reads every file and symlink of the target over and over; each read must
 * be the path's old version or its new one: same bytes and mode, or the same
 * link target. Never a mix, a truncation, or a temp file's 0600 mode. A path
 * may be missing only where the old or the new tree has no file there.
 *
 * Sweeps use synchronous fs calls (a sweep of a hundred small files takes a
 * few milliseconds and no thread-pool round trips), then yield briefly, so
 * the reader keeps up with the pass without starving it of CPU.
 */
import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync } from 'node:fs';
import path from 'node:path';
import type { TreeEntrySnapshot } from '../../helpers/sshd.js';
import type { Snapshot } from './helpers.js';

type Seen =
  | { readonly kind: 'missing' | 'dir' | 'other' | 'unstable' }
  | { readonly kind: 'link'; readonly target: string }
  | { readonly kind: 'file'; readonly bytes: Buffer; readonly mode: number };

function fromSnapshot(e: TreeEntrySnapshot | undefined): Seen {
  if (!e) return { kind: 'missing' };
  if (e.type === 'dir') return { kind: 'dir' };
  if (e.type === 'symlink') return { kind: 'link', target: e.linkTarget ?? '' };
  if (e.type !== 'file') return { kind: 'other' };
  const c = e.content ?? '';
  return { kind: 'file', bytes: c.startsWith('base64:') ? Buffer.from(c.slice(7), 'base64') : Buffer.from(c, 'utf8'), mode: e.mode };
}

function same(a: Seen, b: Seen): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'link') return a.target === (b as typeof a).target;
  if (a.kind === 'file') return a.mode === (b as typeof a).mode && a.bytes.equals((b as typeof a).bytes);
  return true;
}

function describe(s: Seen): string {
  if (s.kind === 'link') return `link -> ${s.target}`;
  if (s.kind === 'file') return `file of ${s.bytes.length} bytes, mode ${s.mode.toString(8)}`;
  return s.kind;
}

function readAll(fd: number, size: number): Buffer {
  let buf = Buffer.alloc(Math.max(size, 4096));
  let got = 0;
  for (;;) {
    if (got === buf.length) buf = Buffer.concat([buf, Buffer.alloc(buf.length)]);
    const n = readSync(fd, buf, got, buf.length - got, got);
    if (n === 0) return buf.subarray(0, got);
    got += n;
  }
}

/** One observation of a path, with O_NOFOLLOW so a symlink is seen as itself. */
function observe(abs: string): Seen {
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing' };
      if (code !== 'ELOOP') throw err;
      try {
        return { kind: 'link', target: readlinkSync(abs) };
      } catch (e2) {
        const c2 = (e2 as NodeJS.ErrnoException).code;
        if (c2 === 'ENOENT' || c2 === 'ENOTDIR') return { kind: 'missing' };
        continue; // EINVAL: replaced by a non-link between open and readlink; look again
      }
    }
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) return { kind: 'dir' };
      if (!st.isFile()) return { kind: 'other' };
      const bytes = readAll(fd, st.size);
      // Mode of the same inode, after the read.
      return { kind: 'file', bytes, mode: fstatSync(fd).mode & 0o7777 };
    } finally {
      closeSync(fd);
    }
  }
  return { kind: 'unstable' };
}

export interface CheckerReport {
  reads: number;
  sweeps: number;
  /** Reads that were neither the old nor the new version. */
  partial: Array<{ path: string; seen: string; allowed: string[] }>;
}

export class ConcurrentChecker {
  private readonly allowed = new Map<string, Seen[]>();
  readonly report: CheckerReport = { reads: 0, sweeps: 0, partial: [] };
  private stopped = false;
  private loop: Promise<void> | undefined;

  /** `before` and `after` are readTree snapshots (relative paths) of the old target and of what the new one must be. */
  constructor(
    private readonly root: string,
    before: Snapshot,
    after: Snapshot,
  ) {
    const isLeaf = (e: TreeEntrySnapshot | undefined): boolean => e !== undefined && e.type !== 'dir';
    for (const p of new Set([...before.keys(), ...after.keys()])) {
      const [o, n] = [before.get(p), after.get(p)];
      if (!isLeaf(o) && !isLeaf(n)) continue;
      const ok = [fromSnapshot(o), fromSnapshot(n)];
      // A file replaced by a directory (or the reverse) is absent for a moment between the two.
      if (!isLeaf(o) || !isLeaf(n)) ok.push({ kind: 'missing' });
      this.allowed.set(p, ok);
    }
  }

  get paths(): number {
    return this.allowed.size;
  }

  /** One read of every path; violations are recorded, not thrown. */
  sweep(): void {
    for (const [rel, ok] of this.allowed) {
      const seen = observe(path.join(this.root, rel));
      this.report.reads++;
      if (!ok.some((a) => same(a, seen))) this.report.partial.push({ path: rel, seen: describe(seen), allowed: ok.map(describe) });
    }
    this.report.sweeps++;
  }

  /** Sweep again and again (a short breath between sweeps, so the pass keeps most of the CPU) until stop() or `maxMs`. */
  start(maxMs: number): void {
    const deadline = Date.now() + maxMs;
    this.loop = (async () => {
      while (!this.stopped && Date.now() < deadline) {
        this.sweep();
        await new Promise((resolve) => setTimeout(resolve, 8));
      }
    })();
  }

  async stop(): Promise<CheckerReport> {
    this.stopped = true;
    await this.loop;
    return this.report;
  }
}
