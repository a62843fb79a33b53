/**
 * One pass at a time per state dir: a lock file created exclusively, holding
 * the owner's pid. A lock whose pid is gone (a killed pass) is taken over.
 */
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalIoError, LockHeldError, errnoOf } from '../errors.js';

export interface Lock {
  readonly path: string;
  release(): Promise<void>;
}

export async function ensureStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o750 }).catch((cause) => {
    throw new LocalIoError(`cannot create the state directory ${stateDir}`, {
      subject: stateDir,
      cause,
      hint: 'create it owned by the sync user, or pass --state-dir',
    });
  });
}

export async function acquireLock(stateDir: string, purpose: string): Promise<Lock> {
  await ensureStateDir(stateDir);
  const path = join(stateDir, 'sync.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o644);
      await handle.writeFile(`${process.pid}\n${purpose}\n`);
      await handle.close();
      return { path, release: () => unlink(path).catch(() => undefined) };
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') {
        throw new LocalIoError(`cannot create the lock file ${path}`, { subject: path, cause: err });
      }
    }
    const holder = await lockHolder(path);
    if (holder !== undefined && holder !== process.pid && isAlive(holder)) {
      throw new LockHeldError(`another xroad-sync pass (pid ${holder}) holds ${path}`, {
        subject: path,
        hint: 'wait for it to finish; a daemon holds the lock only while a pass runs',
      });
    }
    await unlink(path).catch(() => undefined); // stale: its owner died
  }
  throw new LockHeldError(`could not take the lock ${path}: it keeps changing hands`, { subject: path });
}

export async function lockHolder(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) === 'EPERM';
  }
}
