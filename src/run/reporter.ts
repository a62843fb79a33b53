/**
 * Binds a pass's reports to their three readers: slave-sync.log (rsync
 * format, for existing monitoring), stdout/stderr (the operator at a
 * terminal, or the itemized dry run), and the structured JSON record.
 */
import { describeError, type ExitCodeValue, isLockWait } from '../errors.js';
import type { PassReporter, PassStats } from '../pass/types.js';
import type { Change } from '../plan/types.js';
import { itemizePlan } from '../report/itemize.js';
import type { RsyncLogFile } from '../report/rsync-log.js';
import { escapeControls, notice, printLine } from '../util/output.js';

export interface ReporterOptions {
  /** Print itemized changes on stdout (dry run, or --verbose). */
  readonly printItems: boolean;
  /** Print notices and errors on stderr. */
  readonly printErrors: boolean;
  /**
   * Hold "receiving file list" and the summary line of a pass until `end`
   * (the daemon's quiet no-change passes, run/quiet-passes.ts): anything
   * else logged writes the held line first, so the log reads as before.
   */
  readonly holdPlain?: boolean;
}

export interface EndingReporter extends PassReporter {
  /** True while the pass has logged nothing but its held lines. */
  readonly plain: boolean;
  /** Writes the held lines, or drops them (`omit`). */
  end(omit: boolean): void;
}

export function makeReporter(log: RsyncLogFile | null, opts: ReporterOptions): EndingReporter {
  const stderr = (line: string): void => {
    if (opts.printErrors) notice(line);
  };
  const held: Array<() => void> = [];
  let plain = true;
  const hold = (write: () => void): void => {
    if (opts.holdPlain && plain) held.push(write);
    else write();
  };
  // Something worth logging: the held lines go first, then this pass logs as it goes.
  const unhold = (): void => {
    plain = false;
    for (const write of held.splice(0)) write();
  };
  return {
    get plain() {
      return plain;
    },
    end(omit: boolean) {
      if (omit) held.length = 0;
      else unhold();
    },
    receivingFileList: () => {
      const at = new Date();
      hold(() => log?.receivingFileList(at));
    },
    items(changes: readonly Change[]) {
      if (changes.length > 0) unhold();
      log?.items(changes);
      if (opts.printItems) for (const line of itemizePlan(changes)) printLine(escapeControls(line));
    },
    notice(message: string) {
      unhold();
      log?.line(message);
      stderr(message);
    },
    skipped(reason: string) {
      unhold();
      log?.skipped(reason);
      stderr(`sync skipped: ${reason}`);
    },
    success(stats: PassStats) {
      const at = new Date();
      hold(() => log?.success(stats.bytesSent, stats.bytesReceived, stats.totalSize, at));
    },
    failure(error: unknown, code: ExitCodeValue) {
      unhold();
      // Waiting for another pass is not a failed pass: slave-sync.log (and its alerts) never see it.
      if (!isLockWait(error)) log?.failure(error, code);
      stderr(`${describeError(error)} (exit ${code})`);
    },
  };
}
