/** Local edits the quick check (size + mtime) cannot see, as an operator or a tool makes them. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';

/** Rewrites `file` in place (same inode, same size) and puts its mtime back. */
export async function writeKeepingSizeAndMtime(file: string, content: string): Promise<void> {
  const before = await fs.stat(file);
  const handle = await fs.open(file, 'r+');
  try {
    await handle.write(content, 0);
  } finally {
    await handle.close();
  }
  execFileSync('touch', ['-m', '-d', `@${before.mtimeMs / 1000}`, file]);
  const after = await fs.stat(file);
  assert.deepEqual([after.size, after.mtimeMs, after.ino], [before.size, before.mtimeMs, before.ino], 'the edit kept size, mtime and inode');
}
