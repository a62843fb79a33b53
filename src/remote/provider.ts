/**
 * Source providers: how a pass gets its master. A one-shot run connects and
 * disconnects per pass; the daemon keeps one warm session and reconnects only
 * when a pass found it broken.
 */
import type { ConnectionSettings } from '../settings/pass-settings.js';
import { openSession, type SftpSession } from './session.js';
import { SftpSource } from './sftp-source.js';
import type { MasterSource, SourceProvider } from './types.js';

export function connectPerPass(connection: ConnectionSettings, sourceDir: string): SourceProvider {
  const sessions = new WeakMap<MasterSource, SftpSession>();
  return {
    async acquire() {
      const session = await openSession(connection);
      const source = new SftpSource(session, sourceDir);
      sessions.set(source, session);
      return source;
    },
    async release(source) {
      await sessions.get(source)?.close();
    },
  };
}

/** One session reused across passes; dropped after a pass that may have broken it, or when it dies. */
export class WarmSessionProvider implements SourceProvider {
  private session: SftpSession | undefined;
  private source: SftpSource | undefined;
  /** How many SSH connections were opened (tests and the daemon's log use it). */
  connections = 0;

  constructor(
    private readonly connection: ConnectionSettings,
    private readonly sourceDir: string,
    private readonly keepaliveMs = 15_000,
  ) {}

  async acquire(): Promise<MasterSource> {
    if (this.session?.isAlive() && this.source) return this.source;
    this.drop();
    const session = await openSession({ ...this.connection, keepaliveMs: this.keepaliveMs });
    this.connections++;
    this.session = session;
    this.source = new SftpSource(session, this.sourceDir);
    session.onLost(() => {
      if (this.session === session) this.drop();
    });
    return this.source;
  }

  async release(_source: MasterSource, healthy: boolean): Promise<void> {
    if (!healthy) this.drop();
  }

  /** Destroy the session (never waits on a polite end: it can hang). */
  drop(): void {
    this.session?.destroy();
    this.session = undefined;
    this.source = undefined;
  }

  async close(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    this.source = undefined;
    await session?.close();
  }
}
