/**
 * <state-dir>/content-hashes.json: the daemon's record of what each synced
 * file in the target holds (a hash per path), kept across restarts so that an
 * edit made while the daemon was stopped, size and mtime put back, is still
 * found by its first full scan. Rewritten only when the record changes (a
 * pass wrote files, a check found a change); no fsync: after a crash an
 * older record costs at most a fetch-and-compare of the files it names
 * wrongly, never a wrong result, because every finding is checked against
 * the master. A missing, unreadable or other target's record means "none".
 */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { stateFileOwner } from '../util/state-owner.js';
import { hashFile } from '../local/content-hashes.js';
import { readSmallFile } from '../util/small-file.js';
import { stateFilePath } from '../util/state-files.js';

const VERSION = 1;

interface ContentDoc {
  readonly version: number;
  readonly target: string;
  readonly files: Record<string, string>;
}

function contentRecordPath(stateDir: string): string {
  return stateFilePath(stateDir, 'contentHashes');
}

export function loadContentRecord(stateDir: string, target: string): Map<string, string> | null {
  const text = readSmallFile(contentRecordPath(stateDir));
  if (text === null) return null;
  try {
    const doc = JSON.parse(text) as ContentDoc;
    if (doc.version !== VERSION || doc.target !== target || typeof doc.files !== 'object' || doc.files === null) return null;
    return new Map(Object.entries(doc.files).filter(([, hash]) => typeof hash === 'string'));
  } catch {
    return null;
  }
}

export async function saveContentRecord(stateDir: string, target: string, files: ReadonlyMap<string, string>): Promise<void> {
  const doc: ContentDoc = { version: VERSION, target, files: Object.fromEntries(files) };
  await writeFileAtomic(contentRecordPath(stateDir), JSON.stringify(doc), { mode: 0o600, fsync: false, chown: stateFileOwner(stateDir) });
}

/**
 * After a pass not run by the daemon (`sync`, `resume --now`, the timer):
 * what it wrote is the master's content, so a daemon started later does not
 * take it for a local edit. Nothing to do while no daemon has kept a record.
 */
export async function recordWrittenContent(stateDir: string, target: string, paths: readonly string[]): Promise<void> {
  const files = loadContentRecord(stateDir, target);
  if (files === null || paths.length === 0) return;
  for (const path of paths) {
    const abs = join(target, path);
    const hash = isFile(abs) ? hashFile(abs) : null;
    if (hash === null) files.delete(path);
    else files.set(path, hash);
  }
  // A deleted or replaced directory took its files with it.
  for (const path of [...files.keys()]) if (!isFile(join(target, path))) files.delete(path);
  await saveContentRecord(stateDir, target, files);
}

function isFile(abs: string): boolean {
  try {
    return lstatSync(abs).isFile();
  } catch {
    return false;
  }
}
