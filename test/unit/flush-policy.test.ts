/**
 * When staging flushes the target's filesystem once instead of fsyncing each
 * file: only for many files, never against the operator's choice.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { FLUSH_ONCE_MIN_FILES, flushOnceFor } from '../../src/stage/flush.js';

const haveSync = existsSync('/usr/bin/sync') || existsSync('/bin/sync');

describe('staging flush policy', () => {
  it('fsyncs file by file below the threshold, whatever else holds', () => {
    assert.equal(flushOnceFor(1, 100, undefined), false);
    assert.equal(flushOnceFor(FLUSH_ONCE_MIN_FILES - 1, 1e9, undefined), false);
  });

  it('XROAD_SYNC_FLUSH=per-file never flushes the filesystem', () => {
    assert.equal(flushOnceFor(100_000, 1e9, 'per-file'), false);
  });

  it('XROAD_SYNC_FLUSH=filesystem flushes once even for one file (where coreutils sync exists)', { skip: !haveSync && 'no sync binary' }, () => {
    assert.equal(flushOnceFor(1, 10, 'filesystem'), true);
    assert.equal(flushOnceFor(0, 0, 'filesystem'), false, 'nothing staged, nothing to flush');
  });
});
