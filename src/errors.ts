/**
 * Every failure a pass can meet, typed, with the exit code it maps to.
 * Codes follow rsync's where the meaning is the same (so alerting written for
 * the guide's rsync job keeps working); the rest are our own, documented in
 * docs/operations.md "Exit codes".
 */

export const ExitCode = {
  OK: 0,
  USAGE: 1,
  LOCAL_IO: 11,
  PROTOCOL: 12,
  SIGNAL: 20,
  TRANSFER: 23,
  VANISHED: 24,
  SAFETY_VALVE: 25,
  TIMEOUT: 30,
  REPLICA_UNAVAILABLE: 69,
  INTERNAL: 70,
  LOCK_HELD: 75,
  PAUSE_UNCONFIRMED: 76,
  REPLICA_PERMISSION: 77,
  HOST_KEY: 254,
  CONNECTION: 255,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * The one exit-code table: `--help` prints it, docs/operations.md "Exit codes" holds
 * the same rows (a test compares them), and `log` is rsync's rerr_names text
 * for the codes we share, used in slave-sync.log's error line.
 */
export const EXIT_CODE_TABLE: ReadonlyArray<{ readonly code: ExitCodeValue; readonly meaning: string; readonly log: string }> = [
  { code: 0, meaning: 'done, nothing to do, or skipped because sync is paused', log: 'success' },
  { code: 1, meaning: 'usage or configuration error (bad flag or duration, missing file)', log: 'syntax or usage error' },
  { code: 11, meaning: 'local file I/O error (target not writable, disk full)', log: 'error in file IO' },
  {
    code: 12,
    meaning: 'the master sent invalid data (bad names, more or fewer bytes than its own open handle reports)',
    log: 'error in rsync protocol data stream',
  },
  { code: 20, meaning: 'stopped by SIGTERM/SIGINT before commit (nothing changed)', log: 'received SIGINT, SIGTERM, or SIGHUP' },
  {
    code: 23,
    meaning: 'a master file or directory could not be read, or a deletion could not be proven (nothing changed)',
    log: 'some files/attrs were not transferred (see previous errors)',
  },
  {
    code: 24,
    meaning: 'a master file vanished or changed while it was read, also on the one retry (nothing changed)',
    log: 'some files vanished before they could be transferred',
  },
  { code: 25, meaning: 'refused by the safety valve or a transfer limit (nothing changed)', log: 'the --max-delete limit stopped deletions' },
  { code: 30, meaning: 'no progress from the master for --timeout', log: 'timeout in data send/receive' },
  { code: 69, meaning: 'serverconf replica unreachable, not a standby, or not caught up (--serverconf)', log: 'serverconf replica unreachable or not ready' },
  { code: 70, meaning: 'internal error (a bug: please report it with the message)', log: 'internal error' },
  { code: 75, meaning: 'another pass or daemon still held the lock when --wait ran out', log: 'another pass holds the lock' },
  {
    code: 76,
    meaning: 'pause: the running daemon did not confirm it sees the flag file (it may still sync: restart it)',
    log: 'the daemon did not confirm the pause',
  },
  { code: 77, meaning: 'serverconf replica refused us: a peer map or GRANT is missing (--serverconf)', log: 'no permission on the serverconf replica' },
  { code: 254, meaning: "the master's host key is unknown, changed or revoked", log: 'host key verification failed' },
  { code: 255, meaning: 'connection or authentication failure', log: 'unexplained error' },
];

/** rsync's rerr_names text for the codes we share, used in the log's error line. */
export const exitCodeText = Object.fromEntries(EXIT_CODE_TABLE.map((row) => [row.code, row.log])) as Record<ExitCodeValue, string>;

/** The table as `--help` shows it. */
export function exitCodeHelp(): string {
  const rows = EXIT_CODE_TABLE.map((row) => `  ${String(row.code).padStart(3)}  ${row.meaning}`);
  return `\nExit codes (same number as rsync where the meaning is the same):\n${rows.join('\n')}`;
}

/** The table as docs/operations.md "Exit codes" shows it. */
export function exitCodeMarkdown(): string {
  return ['| code | meaning |', '|---|---|', ...EXIT_CODE_TABLE.map((row) => `| ${row.code} | ${row.meaning} |`)].join('\n');
}

export interface ErrorDetails {
  /** The file, host or flag at fault, as the operator would type it. */
  subject?: string;
  cause?: unknown;
  /** What to do about it, printed after the message. */
  hint?: string;
}

export abstract class SyncError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  readonly subject?: string;
  readonly hint?: string;
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.subject = details.subject;
    this.hint = details.hint;
  }
}

/** Bad flags, environment or configuration files. */
export class ConfigError extends SyncError {
  readonly exitCode = ExitCode.USAGE;
}

/** TCP connect, handshake or authentication failed. */
export class ConnectionError extends SyncError {
  readonly exitCode = ExitCode.CONNECTION;
}

/** The master's host key is unknown, changed or revoked. */
export class HostKeyError extends SyncError {
  readonly exitCode = ExitCode.HOST_KEY;
}

/** No progress on the connection for --timeout seconds. */
export class TimeoutError extends SyncError {
  readonly exitCode = ExitCode.TIMEOUT;
}

/** A master file or directory could not be listed or read. */
export class TransferError extends SyncError {
  readonly exitCode = ExitCode.TRANSFER;
}

/**
 * The master changed under the pass (a file vanished, was rewritten or
 * reappeared between listing and read): a race, not a configuration problem.
 * A pass meeting one starts over once; exit 24 is rsync's "vanished" code.
 */
export class MasterChangedError extends SyncError {
  readonly exitCode = ExitCode.VANISHED;
}

/** The master sent something no honest master sends: bad names, sizes that do not match. */
export class ProtocolError extends SyncError {
  readonly exitCode = ExitCode.PROTOCOL;
}

/**
 * The bytes served for a file disagree with a size its open handle still
 * confirms: a master that lies, or (for a file whose mtime is the listing's
 * own second, which the pass knows) a writer that truncated and rewrote it
 * in that second while it was read.
 */
export class ContentUnlikeListingError extends ProtocolError {}

/** Writing the target, the state dir or the log failed (ENOSPC, EACCES, ...). */
export class LocalIoError extends SyncError {
  readonly exitCode = ExitCode.LOCAL_IO;
}

/** The pass was refused before any change: empty source or too many deletions. */
export class SafetyValveError extends SyncError {
  readonly exitCode = ExitCode.SAFETY_VALVE;
}

/** Another pass holds the lock on this target. */
export class LockHeldError extends SyncError {
  readonly exitCode = ExitCode.LOCK_HELD;
}

/**
 * Another writer (a pass or daemon with another state dir) holds the
 * target: refused before anything changed. Unlike a pass in flight in our
 * own state dir, waiting would not help, and the refusal is logged and
 * recorded as a failed pass so monitoring sees the misconfiguration.
 */
export class TargetInUseError extends SyncError {
  readonly exitCode = ExitCode.LOCK_HELD;
}

/**
 * `pause` made the flag, but the running daemon did not record seeing it: its
 * view of the flag directory is stale (a deleted directory kept by a bind
 * mount) or its event loop is stuck. It may still sync.
 */
export class PauseUnconfirmedError extends SyncError {
  readonly exitCode = ExitCode.PAUSE_UNCONFIRMED;
}

/** The pass was stopped by SIGTERM/SIGINT before it committed. */
export class InterruptedError extends SyncError {
  readonly exitCode = ExitCode.SIGNAL;
}

/** Stopped by a signal while waiting for another pass's lock: this pass never started. */
export class LockWaitInterruptedError extends InterruptedError {}

/** The pass never got the lock: the pass that holds it reports for itself, so this is not logged or recorded as a pass. */
export function isLockWait(err: unknown): boolean {
  return err instanceof LockHeldError || err instanceof LockWaitInterruptedError;
}

/**
 * Not a failure: the flag file appeared while the pass ran (`xroad-sync
 * pause`), so it was abandoned before its commit and nothing changed.
 */
export class PassAbandonedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PassAbandonedError';
  }
}

/**
 * A SyncError carries its own code; a system call's error (errno) the pass
 * did not wrap is still local I/O; anything else is a bug, with its own code.
 */
export function exitCodeOf(err: unknown): ExitCodeValue {
  if (err instanceof SyncError) return err.exitCode;
  if (errnoOf(err) !== undefined && typeof (err as { syscall?: unknown }).syscall === 'string') return ExitCode.LOCAL_IO;
  return ExitCode.INTERNAL;
}

/** One line for the operator: message, the subject in it, then the cause's own words. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  let text = err.message;
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error && !text.includes(cause.message)) text += `: ${cause.message}`;
  if (err instanceof SyncError && err.hint) text += ` (${err.hint})`;
  return text;
}

export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof (err as { code: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;
}
