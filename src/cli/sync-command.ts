/** `xroad-sync sync`: one pass, reported to slave-sync.log, stderr, the JSON record and status.json. */

import { connectPerPass } from '../remote/provider.js';
import { runReportedPass } from '../run/reported-pass.js';
import { type RawPassOptions, resolvePassSettings } from '../settings/pass-settings.js';
import { type LockWait, waitingLine } from '../state/lock.js';
import { notice } from '../util/output.js';

export interface SyncCommandOptions extends RawPassOptions {
  verbose?: boolean;
}

export async function syncCommand(raw: SyncCommandOptions): Promise<number> {
  const settings = resolvePassSettings(raw);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  // process.on, not once: signal-exit (write-file-atomic) re-raises a signal when it sees no other listener.
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  try {
    const result = await runReportedPass(settings, connectPerPass(settings.connection, settings.sourceDir), {
      signal: stop.signal,
      printItems: settings.dryRun || raw.verbose === true,
      lockWait: operatorLockWait(settings.lockWaitMs, stop.signal),
    });
    return result.exitCode;
  } finally {
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
  }
}

/** A by-hand pass waits for one in flight, and says so after a second. */
function operatorLockWait(waitMs: number, signal?: AbortSignal): LockWait {
  return {
    waitMs,
    signal,
    onWait: (holder) => notice(waitingLine(holder, waitMs)),
    onTakeover: notice,
  };
}
