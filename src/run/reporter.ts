/**
 * Binds a pass's reports to their three readers: slave-sync.log (rsync
 * format, for existing monitoring), stdout/stderr (the operator at a
 * terminal, or the itemized dry run), and the structured JSON record.
 */
import { describeError, isLockWait, type ExitCodeValue } from '../errors.js';
import type { PassReporter, PassStats } from '../pass/types.js';
import type { Change } from '../plan/types.js';
import { itemizePlan } from '../report/itemize.js';
import type { RsyncLogFile } from '../report/rsync-log.js';

export interface ReporterOptions {
  /** Print itemized changes on stdout (dry run, or --verbose). */
  readonly printItems: boolean;
  /** Print notices and errors on stderr. */
  readonly printErrors: boolean;
}

export function makeReporter(log: RsyncLogFile | null, opts: ReporterOptions): PassReporter {
  const stderr = (line: string): void => {
    if (opts.printErrors) process.stderr.write(`xroad-sync: ${line}\n`);
  };
  return {
    receivingFileList: () => log?.receivingFileList(),
    items(changes: readonly Change[]) {
      log?.items(changes);
      if (opts.printItems) for (const line of itemizePlan(changes)) process.stdout.write(line + '\n');
    },
    notice(message: string) {
      log?.line(message);
      stderr(message);
    },
    skipped(reason: string) {
      log?.skipped(reason);
      stderr(`sync skipped: ${reason}`);
    },
    success(stats: PassStats) {
      log?.success(stats.bytesSent, stats.bytesReceived, stats.totalSize);
    },
    failure(error: unknown, code: ExitCodeValue) {
      // Waiting for another pass is not a failed pass: slave-sync.log (and its alerts) never see it.
      if (!isLockWait(error)) log?.failure(error, code);
      stderr(`${describeError(error)} (exit ${code})`);
    },
  };
}
