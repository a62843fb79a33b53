/**
 * Which temp files in the target a pass removes as strays and which it
 * leaves for a pending journal of another state dir: decided by the owner
 * tag in each name, the owner file in the target root and that state dir's
 * journal. Real files in a temporary directory; no sshd.
 */
import assert from 'node:assert/strict';
import { chown, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { prepareJournal } from '../../src/commit/journal.js';
import type { CommitOp } from '../../src/commit/ops.js';
import { otherOwners, sortStrayTemps } from '../../src/commit/owners.js';
import { ownerFileName, ownerTag, tempName } from '../../src/local/temp-names.js';

describe('stray temp files and the journals that still need them', () => {
  let base: string;
  let target: string;
  let stateA: string;
  let stateB: string;
  let named: string[];
  let unnamed: string;
  let ownerFileA: string;
  let others: string[];

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'xroad-sync-strays-'));
    [target, stateA, stateB] = ['target', 'state-a', 'state-b'].map((d) => join(base, d)) as [string, string, string];
    await Promise.all([mkdir(join(target, 'conf.d'), { recursive: true }), mkdir(stateA), mkdir(stateB)]);
    named = [`conf.d/${tempName(ownerTag(stateA))}`, tempName(ownerTag(stateA))];
    unnamed = `conf.d/${tempName(ownerTag(stateA))}`; // staged by a pass of A killed before its commit
    ownerFileA = ownerFileName(ownerTag(stateA));
    // B's own leftover, and one from a version whose temp names carried no owner.
    others = [`conf.d/${tempName(ownerTag(stateB))}`, 'conf.d/.xroad-sync.0123456789ab.tmp'];
    for (const rel of [...named, unnamed]) await writeFile(join(target, rel), 'staged');
    const ops: CommitOp[] = named.map((temp, i) => ({ op: 'rename', temp, path: `file${i}`, size: 6 }));
    await (await prepareJournal(stateA, target, ops)).begin(); // writes the owner file, then the journal: as a commit killed after it began
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  const found = () => [...named, unnamed, ownerFileA, ...others];

  it("keeps what another state dir's pending journal names (and its owner file); everything else is a stray", () => {
    const { strays, kept } = sortStrayTemps(target, found(), stateB);
    assert.deepEqual(strays.sort(), [unnamed, ...others].sort());
    assert.equal(kept.length, 1);
    assert.equal(kept[0]!.stateDir, stateA);
    assert.deepEqual(kept[0]!.files.sort(), [...named, ownerFileA].sort());
    assert.equal(kept[0]!.needs.kind, 'names');
  });

  it('keeps nothing once that state dir is gone (deleted, never to run again)', async () => {
    await rm(stateA, { recursive: true });
    const { strays, kept } = sortStrayTemps(target, found(), stateB);
    assert.deepEqual(kept, []);
    assert.deepEqual(strays.sort(), found().sort());
  });

  it('keeps nothing when the owner file is missing or names a state dir that is not its owner', async () => {
    await rm(join(target, ownerFileA));
    assert.deepEqual(sortStrayTemps(target, found(), stateB).kept, []);
    await writeFile(join(target, ownerFileA), `${stateB}\n`);
    assert.deepEqual(sortStrayTemps(target, found(), stateB).kept, []);
  });

  it('keeps nothing for a journal written by a user who could not write the target (root only: it chowns)', {
    skip: process.geteuid?.() !== 0 && 'needs root',
  }, async () => {
    await chown(join(stateA, 'commit-journal.json'), 65534, 65534);
    assert.deepEqual(sortStrayTemps(target, found(), stateB).kept, []);
  });

  it("finds another state dir's owner file that appeared after a look found none, in a target given as a symlink to its directory", async () => {
    const real = join(base, 'real-target');
    const link = join(base, 'target-link');
    await mkdir(real);
    await symlink(real, link);
    const realNow = Date.now;
    // Ten seconds on (a clock step, or a daemon ten seconds later): the root's times are settled, the look is remembered.
    Date.now = () => realNow() + 10_000;
    try {
      assert.deepEqual(otherOwners(link, stateB), []);
      await rm(join(stateA, 'commit-journal.json'));
      await (await prepareJournal(stateA, link, [{ op: 'rename', temp: tempName(ownerTag(stateA)), path: 'file', size: 6 }])).begin();
      assert.deepEqual(otherOwners(link, stateB), [stateA], "the owner file written through the link was not seen: the link's own times were remembered");
    } finally {
      Date.now = realNow;
    }
  });

  it('the owning state dir itself keeps what its own pending journal names (left for a replay as another user)', () => {
    const { strays, kept } = sortStrayTemps(target, found(), stateA);
    assert.deepEqual(
      kept.map((k) => k.stateDir),
      [stateA],
    );
    assert.ok(strays.includes(unnamed) && !strays.some((s) => named.includes(s)), JSON.stringify(strays));
  });
});
