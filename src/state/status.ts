/**
 * status.json under --state-dir: what `xroad-sync status` and monitoring read.
 * Written atomically (write-file-atomic: temp file, fsync, rename) after
 * every pass, so a reader never sees half a document.
 */
import { readFile } from 'node:fs/promises';
import writeFileAtomic from 'write-file-atomic';
import { describeError, errnoOf } from '../errors.js';
import type { PassOutcome } from '../pass/outcome.js';
import { stateFilePath } from '../util/state-files.js';
import { stateFileOwner } from '../util/state-owner.js';
import { stateUnreadable } from './readable.js';

export interface LastPass {
  startedAt: string;
  finishedAt: string;
  result: PassOutcome;
  changed: number;
  bytesReceived: number;
  error: string | null;
  exitCode: number;
}

export interface StoredStatus {
  lastPass: LastPass | null;
  lastSuccessAt: string | null;
  /** Set by a running daemon, cleared when it stops. */
  daemonPid: number | null;
  /** The digest of the master state the target mirrors (`xroad-sync digest` on the master gives the same); null: unknown. */
  digest: string | null;
}

const EMPTY_STATUS: StoredStatus = { lastPass: null, lastSuccessAt: null, daemonPid: null, digest: null };

function statusPath(stateDir: string): string {
  return stateFilePath(stateDir, 'status');
}

/** The stored status; an unreadable status.json counts as none (see readStatusStrictly). */
export async function readStatus(stateDir: string): Promise<StoredStatus> {
  return readStatusStrictly(stateDir).catch(() => ({ ...EMPTY_STATUS }));
}

/**
 * What monitoring reads: the stored status, empty when no pass has written
 * one (ENOENT); StateUnreadableError when it may exist but this user cannot
 * read it (no verdict can be drawn from that).
 */
export async function readStatusStrictly(stateDir: string): Promise<StoredStatus> {
  const path = statusPath(stateDir);
  const text = await readFile(path, 'utf8').catch(async (err: unknown) => {
    if (errnoOf(err) === 'ENOENT') return null;
    throw await stateUnreadable(path, err);
  });
  if (text === null) return { ...EMPTY_STATUS };
  try {
    return { ...EMPTY_STATUS, ...(JSON.parse(text) as Partial<StoredStatus>) };
  } catch {
    return { ...EMPTY_STATUS };
  }
}

export async function writeStatus(stateDir: string, status: StoredStatus): Promise<void> {
  // Rename keeps readers from ever seeing half a document; no fsync: after a
  // crash an older status is harmless (the next pass rewrites it), and the
  // every-minute pass should not pay a disk flush for it.
  await writeFileAtomic(statusPath(stateDir), JSON.stringify(status, null, 2) + '\n', { mode: 0o644, fsync: false, chown: stateFileOwner(stateDir) });
}

/** Fold a finished pass into the stored status. */
/** What status.json keeps of a finished pass (a pass's result has more). */
export interface FinishedPass {
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly result: LastPass['result'];
  readonly changed: number;
  readonly bytesReceived: number;
  readonly error?: unknown;
  readonly exitCode: number;
  readonly changedPaths: readonly string[];
  /** Of an ok pass: the digest of the listing the target now mirrors. */
  readonly digest?: string;
}

export async function recordPass(stateDir: string, pass: FinishedPass): Promise<void> {
  const previous = await readStatus(stateDir);
  const lastPass: LastPass = {
    startedAt: pass.startedAt.toISOString(),
    finishedAt: pass.finishedAt.toISOString(),
    result: pass.result,
    changed: pass.changed,
    bytesReceived: pass.bytesReceived,
    error: pass.error === undefined ? null : describeError(pass.error),
    exitCode: pass.exitCode,
  };
  await writeStatus(stateDir, {
    ...previous,
    lastPass,
    lastSuccessAt: pass.result === 'ok' ? lastPass.finishedAt : previous.lastSuccessAt,
    // A pass that changed nothing leaves the target mirroring what it did; a partial one, nothing known.
    digest: pass.digest ?? (pass.changedPaths.length === 0 ? previous.digest : null),
  });
}
