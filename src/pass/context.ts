/**
 * Everything a pass's stages share, in one object (mutagen's transitioner
 * plays this part): what to sync, from where, who hears about it, and what
 * the pass has made live so far. Stages take it instead of long argument lists.
 */

import { countChanges } from '../plan/plan.js';
import type { Change } from '../plan/types.js';
import type { MasterSource } from '../remote/types.js';
import type { PassSettings } from '../settings/pass-settings.js';
import type { PassHooks, PassReporter, PassStats } from './types.js';

export interface PassContext {
  readonly settings: PassSettings;
  readonly source: MasterSource;
  readonly reporter: PassReporter;
  readonly hooks: PassHooks;
  /** Changes made live by this pass even if it fails later: a completed journal, a partial commit. */
  readonly live: Change[];
  /** The stats of `changes`, with the bytes this pass moved (a daemon's session counts since it opened). */
  statsOf(changes: readonly Change[], totalSize: number): PassStats;
}

export function passContext(settings: PassSettings, source: MasterSource, reporter: PassReporter, hooks: PassHooks, live: Change[]): PassContext {
  const before = source.traffic();
  return {
    settings,
    source,
    reporter,
    hooks,
    live,
    statsOf(changes, totalSize) {
      const now = source.traffic();
      return { ...countChanges(changes), bytesReceived: now.received - before.received, bytesSent: now.sent - before.sent, totalSize };
    },
  };
}
