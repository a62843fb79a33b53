/**
 * Every failure a pass can meet, typed, with the exit code it maps to.
 * Codes follow rsync's where the meaning is the same (so alerting written for
 * the guide's rsync job keeps working); the rest are our own, documented in
 * README.md "Exit codes".
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
  LOCK_HELD: 75,
  HOST_KEY: 254,
  CONNECTION: 255,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** rsync's rerr_names text for the codes we share, used in the log's error line. */
export const exitCodeText: Record<ExitCodeValue, string> = {
  0: 'success',
  1: 'syntax or usage error',
  11: 'error in file IO',
  12: 'error in rsync protocol data stream',
  20: 'received SIGINT, SIGTERM, or SIGHUP',
  23: 'some files/attrs were not transferred (see previous errors)',
  24: 'some files vanished before they could be transferred',
  25: 'the --max-delete limit stopped deletions',
  30: 'timeout in data send/receive',
  75: 'another pass holds the lock',
  254: 'host key verification failed',
  255: 'unexplained error',
};

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

/** The pass was stopped by SIGTERM/SIGINT before it committed. */
export class InterruptedError extends SyncError {
  readonly exitCode = ExitCode.SIGNAL;
}

export function exitCodeOf(err: unknown): ExitCodeValue {
  return err instanceof SyncError ? err.exitCode : ExitCode.LOCAL_IO;
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
