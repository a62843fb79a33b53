import type { Filter } from '../filter/types.js';
import type { Entry, Tree } from '../tree.js';
import type { KnownMaster } from './known-master.js';

/** Where fetched bytes go: the stage hands one of these per file. */
export interface FileSink {
  write(chunk: Buffer, position: number): Promise<void>;
}

/**
 * The master as a pass needs it, whatever carries it (OpenSSH over SFTP in
 * production, an in-process server in tests). Implementations enforce the
 * no-progress timeout themselves and fail with the typed errors of errors.ts.
 */
/** What a scan could not take over but did not fail on (e.g. a name that is not UTF-8): one line per entry. */
export interface ScanNotes {
  skipped(path: string, reason: string): void;
}

/** The master's answer to "is this path gone?": only a "no such file" reply proves it. */
export interface GoneCheck {
  readonly path: string;
  readonly gone: boolean;
  /** Why it is not proven gone: it exists again, or the master's error. */
  readonly reason?: string;
  readonly exists?: boolean;
}

export interface MasterSource {
  /**
   * lstat-semantics listing of the whole tree below the source root, minus
   * excluded paths (not descended). Fails with TransferError when a directory
   * can be listed but not entered (its entries would be silently missing).
   * With `known` (the daemon's), directories listed the same as in the last
   * scan take their entries from it, and an unchanged master gives back the
   * last tree itself.
   */
  scan(filter: Filter, notes?: ScanNotes, known?: KnownMaster): Promise<Tree>;
  /** Ask the master about each exact path; used before deleting it on the slave. */
  confirmGone(paths: readonly string[]): Promise<GoneCheck[]>;
  /**
   * Stream one regular file into `sink`. Fails with MasterChangedError when
   * the file vanished, or when the open handle's size or mtime no longer
   * match the listing after the read (rewritten between listing and read);
   * with ProtocolError when the bytes served contradict the handle's own
   * size; with TransferError when it cannot be read.
   * Returns the number of bytes written.
   */
  fetch(expected: Entry, sink: FileSink): Promise<number>;
  /** Bytes over the wire so far, for the log's final line. */
  traffic(): { sent: number; received: number };
}

/** Where the master comes from: a fresh connection per pass, or the daemon's warm session. */
export interface SourceProvider {
  acquire(): Promise<MasterSource>;
  /** `healthy` false after a failure: the provider should drop the session. */
  release(source: MasterSource, healthy: boolean): Promise<void>;
}
