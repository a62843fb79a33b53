/**
 * Structured JSON lines on stdout for journald: one object per event, one
 * `pass` record per pass. Deliberately bare (no transports, no pretty
 * printing, no worker threads) because the CLI starts once a minute.
 */
import { type DestinationStream, type Logger, pino } from 'pino';
import { ConfigError, describeError, exitCodeOf } from '../errors.js';
import type { PassOutcome } from '../pass/outcome.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** pino level name; default 'info'. */
  readonly level?: string;
  /** A file descriptor (default 1, stdout) or a stream. */
  readonly destination?: number | DestinationStream;
}

/**
 * XROAD_SYNC_LOG_LEVEL (info by default): `debug` adds a JSON record for each
 * of the daemon's quiet passes (ok, nothing changed, left out of slave-sync.log).
 */
export function logLevelFromEnv(env: NodeJS.ProcessEnv = process.env): 'debug' | 'info' | 'warn' | 'error' {
  const level = env.XROAD_SYNC_LOG_LEVEL;
  if (level === undefined || level === '') return 'info';
  if (level === 'debug' || level === 'info' || level === 'warn' || level === 'error') return level;
  throw new ConfigError(`XROAD_SYNC_LOG_LEVEL=${level} is not a log level`, { subject: 'XROAD_SYNC_LOG_LEVEL', hint: 'use debug, info, warn or error' });
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const dest = opts.destination ?? 1;
  // Synchronous writes to an fd: nothing is lost when the CLI exits right after a pass.
  const stream = typeof dest === 'number' ? pino.destination({ dest, sync: true }) : dest;
  return pino(
    {
      level: opts.level ?? 'info',
      // journald records pid and host itself.
      base: null,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

export interface PassRecord {
  readonly msg: 'pass';
  readonly result: PassOutcome;
  /** Items created or updated (deletions not counted). */
  readonly changed: number;
  /** Entries deleted, make-room deletions for a replacement excluded. */
  readonly deleted: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly durationMs: number;
  readonly error?: string;
  readonly exitCode?: number;
}

/** What the pass knows at its end; PassResult/PassStats from pass/types.ts spread straight in. */
export interface PassFacts {
  readonly result: PassOutcome;
  readonly changed?: number;
  readonly deleted?: number;
  readonly bytesReceived?: number;
  readonly bytesSent?: number;
  readonly durationMs: number;
  readonly error?: unknown;
}

/** The one record per pass that dashboards and alerts key on. */
export function passRecord(facts: PassFacts): PassRecord {
  const record: PassRecord = {
    msg: 'pass',
    result: facts.result,
    changed: facts.changed ?? 0,
    deleted: facts.deleted ?? 0,
    bytesReceived: facts.bytesReceived ?? 0,
    bytesSent: facts.bytesSent ?? 0,
    durationMs: Math.round(facts.durationMs),
  };
  if (facts.error === undefined) return record;
  return { ...record, error: describeError(facts.error), exitCode: exitCodeOf(facts.error) };
}

/** Logs a pass record at error level when it failed, info otherwise. */
export function logPass(logger: Logger, record: PassRecord): void {
  if (record.result === 'failed') logger.error(record);
  else logger.info(record);
}

/** The JSON records in a process's stdout (other lines, and a partial last line, skipped). */
export function parseRecords(text: string): Array<Record<string, unknown>> {
  const records: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      records.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial last line: not a record yet
    }
  }
  return records;
}
