/**
 * <state-dir>/content-hashes.json: the record of what each synced file in
 * the target holds (a hash per path), kept by the daemon and by one-shot
 * passes alike, so that an edit whose size and mtime were put back is found
 * by the next content check, in whichever process runs it. Rewritten only
 * when the record changes (a
 * pass wrote files, a check found a change); no fsync: after a crash an
 * older record costs at most a fetch-and-compare of the files it names
 * wrongly, never a wrong result, because every finding is checked against
 * the master. A missing, unreadable or other target's record means "none".
 */
import writeFileAtomic from 'write-file-atomic';
import { readSmallFile } from '../util/small-file.js';
import { stateFilePath } from '../util/state-files.js';
import { stateFileOwner } from '../util/state-owner.js';

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
