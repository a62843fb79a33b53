/**
 * Skipping a test because a component (a tool, root, a kernel feature) is
 * missing is allowed only outside CI: `npm test`'s pretest installs every
 * Debian package the suite needs, and CI (CI=true) must run everything, so
 * there a missing component fails loudly instead of skipping quietly.
 */
import assert from 'node:assert/strict';

export const IN_CI = process.env.CI === 'true';

/** For `{ skip: … }`: the reason to skip, false to run; under CI=true a reason throws (the file fails, naming it). */
export function skipUnlessCI(reason: string | false): string | false {
  if (!reason) return false;
  if (IN_CI) throw new Error(`CI=true and a test component is missing: ${reason} (.ci/run and scripts/test-setup.sh must install it)`);
  return reason;
}

/** Inside a test: skip with the reason, or fail under CI=true. */
export function skipOrFailInCI(t: { skip(message?: string): void }, reason: string): void {
  assert.ok(!IN_CI, `CI=true and a test component is missing: ${reason}`);
  t.skip(reason);
}
