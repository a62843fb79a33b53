/** The vocabulary of a pass, shared by its stages and by the runner above it. */

import type { CommitStep } from '../commit/commit.js';
import type { ExitCodeValue } from '../errors.js';
import type { KnownTarget } from '../local/known-target.js';
import type { TargetScan } from '../local/scan.js';
import type { Change } from '../plan/types.js';
import type { KnownMaster } from '../remote/known-master.js';
import type { IncomingContent } from '../state/content-record.js';
import type { LockWait } from '../state/lock.js';
import type { Tree } from '../tree.js';
import type { PassOutcome } from './outcome.js';

/** What a pass reports as it goes; the CLI binds it to slave-sync.log, stdout and pino. */
export interface PassReporter {
  receivingFileList(): void;
  /** The applied (or, in a dry run, planned) changes, in plan order: logged together so replaced directories itemize right. */
  items(changes: readonly Change[]): void;
  /** Free-form notice, e.g. "cannot delete non-empty directory: jetty". */
  notice(message: string): void;
  skipped(reason: string): void;
  success(stats: PassStats): void;
  failure(error: unknown, code: ExitCodeValue): void;
}

export interface PassStats {
  readonly changed: number;
  readonly deleted: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly totalSize: number;
}

export interface PassResult extends PassStats {
  readonly result: PassOutcome;
  readonly exitCode: ExitCodeValue;
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly error?: unknown;
  /** Paths changed by this pass (for restart hints and --on-change). */
  readonly changedPaths: readonly string[];
  /** An ok pass: the master listing (after excludes) the target now mirrors, for its digest. */
  readonly mirrored?: Tree;
  /**
   * An ok pass: the content hash (local/content-hashes.ts) of each file it fetched, by path, as
   * staged: what it wrote, or what it compared and found identical. The content record is kept from these.
   */
  readonly fetchedContent?: ReadonlyMap<string, string>;
}

export interface PassHooks {
  /** Awaited at each named point (fault injection in tests, progress). */
  readonly at?: (point: PassPoint, path?: string) => void | Promise<void>;
  readonly signal?: AbortSignal;
  /** How long to wait for another pass's lock (default: fail at once). */
  readonly lockWait?: LockWait;
  /** The daemon's watcher-backed memory of the target: a pass plans against it instead of scanning, while it holds. */
  readonly knownTarget?: KnownTarget;
  /** The daemon's memory of the master's listing: unchanged directories are not turned into entries again. */
  readonly knownMaster?: KnownMaster;
  /** Paths edited locally: fetched again and compared with the slave's bytes even when size and mtime match. */
  readonly verify?: ReadonlySet<string>;
  /**
   * Local work that needs the pass's locks but not the master (a one-shot pass's content check),
   * run while the SSH session is set up, after an interrupted commit is completed.
   */
  readonly whileConnecting?: () => Promise<LocalCheck | undefined>;
  /** A scan of the target taken under this pass's locks (the content check's): planned against instead of scanning again. */
  readonly targetScan?: TargetScan;
  /**
   * Awaited before the commit's first rename, with what it leaves at each path it changes: the hash of the
   * staged bytes, or null where no regular file will be. The keeper of the content record (run/local-edits.ts)
   * saves it, so a check after the commit was cut short does not take the new content for local edits.
   * Must not throw: the commit waits for it, it does not depend on it.
   */
  readonly recordIncoming?: (incoming: IncomingContent) => Promise<void>;
}

/** What a local check found: the paths to compare byte for byte, and the scan it took of the target. */
export interface LocalCheck {
  readonly verify: ReadonlySet<string>;
  /** The scan, and when it began (monotonic ms). */
  readonly targetScan?: { readonly scan: TargetScan; readonly takenAt: number };
}
/** `flush`: the one flush of many staged files is about to start (the commit prepares meanwhile). */
export type PassPoint = 'connected' | 'scanned' | 'planned' | 'staged' | 'file-staged' | 'flush' | CommitStep | 'committed';
