/**
 * The streaming comparison of a directory listing with the remembered one
 * (remote/known-master.ts): nothing kept while the batches agree, every name
 * kept from the first difference on, and the record for the next pass made
 * of both.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ListedName, ListingMatch } from '../../src/remote/known-master.js';

const named = (filename: string, size = 1): ListedName => ({ filename, attrs: { mode: 0o100644, size, mtime: 1_700_000_000, uid: 0, gid: 0 } });
const names = (n: number): ListedName[] => Array.from({ length: n }, (_, i) => named(`f${i}`));

describe('listing match', () => {
  it('keeps nothing while the batches agree, and says the listing is the same', () => {
    const first = new ListingMatch(undefined);
    for (let b = 0; b < 5; b++) first.add(names(500).slice(b * 100, b * 100 + 100));
    assert.equal(first.tail.length, 500, 'without a remembered listing every name is kept');
    const remembered = first.record(['f0'], []);
    const again = new ListingMatch(remembered);
    for (let b = 0; b < 5; b++) again.add(names(500).slice(b * 100, b * 100 + 100));
    assert.equal(again.same, true);
    assert.equal(again.tail.length, 0, 'an unchanged listing holds no names');
  });

  it('keeps the names from the first difference on, and records the agreed ones with them', () => {
    const remembered = new ListingMatch(undefined);
    remembered.add(names(300));
    const before = remembered.record([], []);
    const changed = new ListingMatch(before);
    const now = names(300);
    now[150] = named('f150', 99); // an in-place edit: same name, another size
    now.push(named('new'));
    changed.add(now.slice(0, 100));
    changed.add(now.slice(100));
    assert.equal(changed.same, false);
    assert.deepEqual(
      changed.agreedNames(),
      names(150).map((n) => n.filename),
    );
    assert.deepEqual(
      changed.tail.map((n) => n.filename),
      now.slice(150).map((n) => n.filename),
    );
    const next = changed.record([], []);
    const replay = new ListingMatch(next);
    replay.add(now);
    assert.equal(replay.same, true, 'the record of a changed listing is that listing');
  });

  it('is not the same when the listing is shorter or longer than the remembered one', () => {
    const full = new ListingMatch(undefined);
    full.add(names(10));
    const before = full.record([], []);
    const shorter = new ListingMatch(before);
    shorter.add(names(9));
    assert.equal(shorter.same, false);
    const longer = new ListingMatch(before);
    longer.add([...names(10), named('f10')]);
    assert.equal(longer.same, false);
    assert.deepEqual(
      longer.tail.map((n) => n.filename),
      ['f10'],
    );
  });
});
