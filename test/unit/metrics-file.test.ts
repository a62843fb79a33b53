/**
 * The metrics file's counters across overlapping writes in one process: the
 * daemon flushes on a pause change while a pass may be counted and flushed.
 * A pass counted while a write is under way must reach the file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PassMetrics } from '../../src/state/metrics-file.js';

const pass = (n: number) => ({
  result: 'ok' as const,
  exitCode: 0,
  startedAt: new Date(1_000_000 + n * 1000),
  finishedAt: new Date(1_000_500 + n * 1000),
  changed: 1,
  deleted: 0,
  bytesReceived: 10,
  bytesSent: 5,
});

test('a pass counted while a metrics write is under way is in the file after the next write (never lost)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xroad-sync-metrics-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const place = { metricsFile: path.join(dir, 'xroad-sync.prom'), stateDir: dir, targetDir: path.join(dir, 'target'), flagFile: path.join(dir, 'flag') };
  const metrics = await PassMetrics.load(place, { daemon: true });
  await metrics.countPass(pass(1));
  const first = metrics.flush(); // under way: its write awaits the filesystem
  const counting = metrics.countPass(pass(2));
  await Promise.all([first, counting]);
  await metrics.flush();
  const text = readFileSync(place.metricsFile, 'utf8');
  assert.match(text, /^xroad_sync_passes_total\{result="ok"\} 2$/m, text);
  assert.match(text, /^xroad_sync_changed_files_total 2$/m, text);
});
