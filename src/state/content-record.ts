/**
 * <state-dir>/content-hashes.json: the record of what each synced file in
 * the target holds (a hash per path, and the stat identity the file had when
 * it was hashed), kept by the daemon and by one-shot passes alike, so that
 * an edit whose size and mtime were put back is found by the next content
 * check, in whichever process runs it, and a file whose identity is
 * unchanged need not be read again. Version 1 held hashes only: it is still
 * read (every file is then hashed once more, nothing is noted falsely).
 * Rewritten only when the record changes (a pass wrote files, a check found
 * a change); no fsync: after a crash an older record costs at most a
 * fetch-and-compare of the files it names wrongly, never a wrong result,
 * because every finding is checked against the master. A missing or other
 * target's record means "none"; so does an unusable one, and the loader says why.
 *
 * `incoming`: what a commit is about to leave at each path it changes (the
 * hash of the staged bytes; null where no regular file will be), saved
 * before its first rename and dropped when the pass has recorded what it
 * wrote. A check after the commit was cut short (kill, power loss) takes
 * either content for the master's, not for a local edit. A separate map,
 * not a field of each entry: a file the commit adds has no entry yet. Older
 * versions of xroad-sync ignore it (they only warn about those files once),
 * and a record without it is read as before: the version stays 2. Not
 * fsynced (run/local-edits.ts, recordIncoming, says why).
 */
import writeFileAtomic from 'write-file-atomic';
import { describeError } from '../errors.js';
import type { StatIdentity } from '../local/content-hashes.js';
import { readSmallFileStrictly } from '../util/small-file.js';
import { stateFilePath } from '../util/state-files.js';
import { stateFileOwner } from '../util/state-owner.js';

const VERSION = 2;

/** What a synced file held when it was last hashed. */
export interface RecordedContent {
  readonly hash: string;
  /** Its stat identity then (local/content-hashes.ts); none when it was too recent to trust. */
  readonly stat?: StatIdentity;
}

interface ContentDoc {
  readonly version: number;
  readonly target: string;
  /** Version 1: path → hash. Version 2: path → [hash] or [hash, dev, ino, size, mtimeMs, ctimeMs]. */
  readonly files: Record<string, unknown>;
  /** Path → the hash of what the commit in progress writes there, or null where it leaves no file. */
  readonly incoming?: Record<string, unknown>;
}

/** What a commit leaves at each path it changes: a content hash, or null where no regular file will be. */
export type IncomingContent = ReadonlyMap<string, string | null>;

export interface ContentRecord {
  readonly files: Map<string, RecordedContent>;
  readonly incoming: Map<string, string | null>;
}

export function contentRecordPath(stateDir: string): string {
  return stateFilePath(stateDir, 'contentHashes');
}

/**
 * The record, or null for none: missing, another target's, or unusable. `onUnusable` hears why a record
 * that is there cannot be used (unreadable, not JSON, truncated by a crash, an unknown version): the
 * check then starts afresh and cannot see an edit that kept size and mtime, which the operator must know.
 */
export function loadContentRecord(stateDir: string, target: string, onUnusable?: (why: string) => void): ContentRecord | null {
  let text: string | null;
  try {
    text = readSmallFileStrictly(contentRecordPath(stateDir));
  } catch (err) {
    onUnusable?.(describeError(err));
    return null;
  }
  if (text === null) return null;
  try {
    const doc = JSON.parse(text) as ContentDoc;
    if (typeof doc !== 'object' || doc === null || (doc.version !== 1 && doc.version !== VERSION) || typeof doc.files !== 'object' || doc.files === null) {
      onUnusable?.('not a content record of a version this xroad-sync reads');
      return null;
    }
    if (doc.target !== target) return null;
    const files = new Map<string, RecordedContent>();
    for (const [path, value] of Object.entries(doc.files)) {
      const content = doc.version === 1 ? fromVersion1(value) : fromVersion2(value);
      if (content) files.set(path, content);
    }
    const incoming = new Map<string, string | null>();
    for (const [path, value] of Object.entries(typeof doc.incoming === 'object' && doc.incoming !== null ? doc.incoming : {})) {
      if (typeof value === 'string' || value === null) incoming.set(path, value);
    }
    return { files, incoming };
  } catch (err) {
    onUnusable?.(text === '' ? 'empty' : describeError(err));
    return null;
  }
}

function fromVersion1(value: unknown): RecordedContent | undefined {
  return typeof value === 'string' ? { hash: value } : undefined;
}

function fromVersion2(value: unknown): RecordedContent | undefined {
  if (!Array.isArray(value) || typeof value[0] !== 'string') return undefined;
  const [hash, dev, ino, size, mtimeMs, ctimeMs] = value as unknown[];
  const numbers = [dev, ino, size, mtimeMs, ctimeMs];
  if (value.length !== 6 || !numbers.every((n) => typeof n === 'number')) return { hash: hash as string };
  return { hash: hash as string, stat: { dev, ino, size, mtimeMs, ctimeMs } as StatIdentity };
}

export async function saveContentRecord(
  stateDir: string,
  target: string,
  files: ReadonlyMap<string, RecordedContent>,
  incoming: IncomingContent = new Map(),
): Promise<void> {
  const entries = [...files].map(
    ([path, { hash, stat }]) => [path, stat ? [hash, stat.dev, stat.ino, stat.size, stat.mtimeMs, stat.ctimeMs] : [hash]] as const,
  );
  const doc: ContentDoc = {
    version: VERSION,
    target,
    files: Object.fromEntries(entries),
    ...(incoming.size > 0 ? { incoming: Object.fromEntries(incoming) } : {}),
  };
  await writeFileAtomic(contentRecordPath(stateDir), JSON.stringify(doc), { mode: 0o600, fsync: false, chown: stateFileOwner(stateDir) });
}
