import type { Entry } from '../tree.js';
import type { IdMapping, Ownership } from './types.js';

/**
 * The owner and group a synced path should get on this slave, following
 * `rsync -a` (man rsync --owner, --group, --numeric-ids):
 * - as root, both are mapped by name (uids differ between nodes), falling back
 *   to the master's numeric id when the name is unknown here; id 0 is never
 *   mapped by name;
 * - as another user (the guide runs the sync as xroad), the owner is never
 *   set and the group only when the user belongs to it.
 */
export function desiredOwnership(entry: Entry, ids: IdMapping): Ownership {
  const gid = mapId(entry.gid, entry.group, ids.gidByName);
  if (ids.asRoot) return { uid: mapId(entry.uid, entry.owner, ids.uidByName), gid };
  return ids.memberGids.has(gid) ? { gid } : {};
}

function mapId(numeric: number, name: string | undefined, byName: ReadonlyMap<string, number>): number {
  if (numeric === 0 || name === undefined || /^\d+$/.test(name)) return numeric;
  return byName.get(name) ?? numeric;
}
