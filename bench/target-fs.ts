/**
 * Where the bench's targets live. A slave's /etc is on a journaled
 * filesystem (ext4 on Debian and Ubuntu, xfs on RHEL); this VM's root ext4
 * has no journal, and there the kernel skips every inode deleted in the last
 * minute when it allocates one (ext4's recently_deleted(), only without a
 * journal): after a run or another job removed thousands of files, each
 * create costs ~0.5 ms of kernel CPU for both tools, and the cost comes and
 * goes with whatever else deleted files. So by default (as root, with
 * mkfs.ext4) the targets and state dirs are on a loop-mounted ext4 with its
 * journal, as a slave's would be; BENCH_TARGET_FS=workdir keeps them in the
 * work dir (the describe line says which was measured).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface TargetFs {
  /** Directory to create the tools' targets and state dirs in. */
  readonly root: string;
  /** For the bench's header and results: the filesystem measured on. */
  readonly describe: string;
  close(): Promise<void>;
}

const IMAGE_BYTES = 4 * 1024 ** 3; // sparse: 50,000-entry trees and 35 MiB targets for every tool fit

function run(command: string, args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error?.message ?? ''}`.trim() };
}

export async function targetFilesystem(work: string, log: (line: string) => void): Promise<TargetFs> {
  const inWorkDir: TargetFs = { root: work, describe: `work dir ${work} (${fsTypeOf(work)})`, close: async () => undefined };
  const wanted = process.env.BENCH_TARGET_FS ?? 'ext4';
  if (wanted === 'workdir') return inWorkDir;
  if (process.getuid?.() !== 0) {
    log('targets in the work dir: a journaled loop filesystem needs root (BENCH_TARGET_FS=workdir says so explicitly)');
    return inWorkDir;
  }
  const image = path.join(work, 'targets.ext4');
  const root = path.join(work, 'targets');
  await fs.mkdir(root);
  const file = await fs.open(image, 'w');
  await file.truncate(IMAGE_BYTES).finally(() => file.close());
  const made = run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', image]);
  const mounted = made.ok ? run('mount', ['-o', 'loop', image, root]) : made;
  if (!mounted.ok) {
    log(`targets in the work dir: cannot make a journaled ext4 (${mounted.output})`);
    await fs.rm(image, { force: true });
    return inWorkDir;
  }
  await fs.chmod(root, 0o755);
  return {
    root,
    describe: `loop-mounted ext4 with journal (${IMAGE_BYTES / 1024 ** 3} GiB image in ${work})`,
    close: async () => {
      const out = run('umount', [root]);
      if (!out.ok) run('umount', ['-l', root]);
      await fs.rm(image, { force: true });
    },
  };
}

function fsTypeOf(dir: string): string {
  const r = run('stat', ['-f', '-c', '%T', dir]);
  return r.ok ? r.output : 'unknown filesystem';
}
