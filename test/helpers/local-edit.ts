/** Local edits the quick check (size + mtime) cannot see, as an operator or a tool makes them. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';

/** Rewrites `file` in place (same inode, same size) and puts its mtime back. */
export async function writeKeepingSizeAndMtime(file: string, content: string): Promise<void> {
  const before = await fs.stat(file, { bigint: true });
  const handle = await fs.open(file, 'r+');
  try {
    await handle.write(content, 0);
  } finally {
    await handle.close();
  }
  // Whole nanoseconds: a float of milliseconds can miss the original mtime by a fraction.
  const seconds = before.mtimeNs / 1_000_000_000n;
  const nanoseconds = String(before.mtimeNs % 1_000_000_000n).padStart(9, '0');
  execFileSync('touch', ['-m', '-d', `@${seconds}.${nanoseconds}`, file]);
  const after = await fs.stat(file, { bigint: true });
  assert.deepEqual([after.size, after.mtimeNs, after.ino], [before.size, before.mtimeNs, before.ino], 'the edit kept size, mtime and inode');
}
