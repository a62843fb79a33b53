/** `xroad-sync daemon`: resolve settings, then hand over to the daemon loop. */
import { resolvePassSettings, type RawPassOptions } from '../config.js';
import { runDaemon } from '../daemon/daemon.js';
import { durationOption } from '../util/duration.js';

export async function daemonCommand(raw: RawPassOptions & { interval?: string }): Promise<number> {
  const settings = resolvePassSettings(raw);
  const intervalMs = durationOption(raw.interval ?? '60', '--interval', { minMs: 500, maxMs: 86_400_000 });
  return runDaemon(settings, { intervalMs });
}
