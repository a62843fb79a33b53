/** `xroad-sync daemon`: resolve settings, then hand over to the daemon loop. */
import { resolvePassSettings, type RawPassOptions } from '../config.js';
import { ConfigError, describeError, exitCodeOf } from '../errors.js';
import { runDaemon } from '../daemon/daemon.js';

export async function daemonCommand(raw: RawPassOptions & { interval?: string }): Promise<number> {
  try {
    const settings = resolvePassSettings(raw);
    const interval = Number(raw.interval ?? 60);
    if (!Number.isFinite(interval) || interval < 0.5 || interval > 86400) {
      throw new ConfigError(`--interval must be a number of seconds from 0.5 to 86400, got "${raw.interval}"`, { subject: '--interval' });
    }
    return await runDaemon(settings, { intervalMs: Math.round(interval * 1000) });
  } catch (err) {
    process.stderr.write(`xroad-sync: ${describeError(err)}\n`);
    return exitCodeOf(err);
  }
}
