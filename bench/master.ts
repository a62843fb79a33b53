/**
 * The master for the benchmark: the test harness's OpenSSH sshd, plus a
 * meter for the CPU the master spends per run (what N slaves polling every
 * minute cost the primary node).
 *
 * `SetEnv SHLVL=1`: rsync runs `rsync --server` through the account's login
 * shell, and bash sources ~/.bashrc whenever sshd starts it (SSH_CLIENT set,
 * SHLVL < 2). On a build host that .bashrc can be anything (pyenv init costs
 * ~1 s of CPU here); a master's xroad-slave account has the distribution's
 * skeleton .bashrc, which returns at once for a non-interactive shell. With
 * SHLVL=1 in the session environment bash skips it, which is what a real
 * master costs. internal-sftp (xroad-sync) starts no shell either way.
 */
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { descendantsOf, startMaster, type TestMaster } from '../test/helpers/sshd.js';

export async function startBenchMaster(): Promise<TestMaster> {
  // MaxStartups: OpenSSH's default, written out because the herd scenario is about it.
  const master = await startMaster({ extraConfig: ['SetEnv SHLVL=1', 'MaxStartups 10:30:100'] });
  if (master.kind !== 'openssh') {
    await master.stop();
    throw new Error('OpenSSH sshd (/usr/sbin/sshd) is needed: rsync cannot run over the embedded SFTP master');
  }
  return master;
}

const CLK_TCK = 100; // USER_HZ on Linux

interface CpuSnapshot {
  readonly ticks: number;
  readonly live: ReadonlySet<number>;
}

/** utime, stime, cutime, cstime of a pid, in ticks; undefined once it is gone. */
function times(pid: number): [number, number, number, number] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(f[11]), Number(f[12]), Number(f[13]), Number(f[14])];
  } catch {
    return undefined;
  }
}

/**
 * CPU of the sshd listener's finished children (cutime/cstime: every
 * session it reaped, with the rsync --server or sftp work inside) plus its
 * live descendants (the daemon's warm sessions). Linux only; 10 ms ticks.
 */
export class MasterCpu {
  private constructor(private readonly listener: number) {}

  static async of(master: TestMaster): Promise<MasterCpu | null> {
    const pid = Number((await fs.readFile(path.join(master.dir, 'sshd.pid'), 'utf8').catch(() => '')).trim());
    return pid > 0 && times(pid) ? new MasterCpu(pid) : null;
  }

  snapshot(): CpuSnapshot {
    const own = times(this.listener);
    const live = new Set(descendantsOf(this.listener));
    let ticks = own ? own[2] + own[3] : 0;
    for (const pid of live) {
      const t = times(pid);
      if (t) ticks += t[0] + t[1] + t[2] + t[3];
    }
    return { ticks, live };
  }

  /** Master CPU ms since `before`, once the sessions opened since then have ended and been reaped (≤ 3 s). */
  async since(before: CpuSnapshot): Promise<number> {
    const deadline = Date.now() + 3000;
    while (descendantsOf(this.listener).some((pid) => !before.live.has(pid)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return ((this.snapshot().ticks - before.ticks) * 1000) / CLK_TCK;
  }
}
