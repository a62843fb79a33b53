/**
 * A loopback TCP proxy in front of the master that misbehaves on purpose:
 * after `afterBytes` bytes from the server it either cuts the connection
 * (resets both sockets: no SSH disconnect, no FIN, like a firewall reset)
 * or stalls it (stops forwarding either way, sockets left open, like a hung
 * master or a black-holed route). Listens on 127.0.0.1 only.
 */
import net from 'node:net';

export type ProxyFault = 'cut' | 'stall';

export class FaultProxy {
  /** Bytes forwarded from the server to the client so far (all connections). */
  forwarded = 0;
  /** True once the fault has been applied. */
  tripped = false;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(upstreamPort: number, fault: ProxyFault, afterBytes: number): Promise<FaultProxy> {
    const server = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
    });
    const proxy = new FaultProxy(server, port);
    server.on('connection', (client) => proxy.handle(client, upstreamPort, fault, afterBytes));
    return proxy;
  }

  private handle(client: net.Socket, upstreamPort: number, fault: ProxyFault, afterBytes: number): void {
    const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('error', () => {}); // resets are the point of this proxy
      s.once('close', () => this.sockets.delete(s));
    }
    let stalled = false;
    client.on('data', (chunk: Buffer) => {
      if (!stalled) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (stalled) return;
      const room = afterBytes - this.forwarded;
      if (chunk.length < room) {
        this.forwarded += chunk.length;
        client.write(chunk);
        return;
      }
      if (room > 0) client.write(chunk.subarray(0, room));
      this.forwarded += Math.max(room, 0);
      this.tripped = true;
      if (fault === 'cut') {
        // TCP RST both ways: no SSH disconnect, no FIN.
        upstream.resetAndDestroy();
        client.resetAndDestroy();
      } else {
        stalled = true;
        upstream.pause();
        client.pause();
      }
    });
    upstream.once('close', () => {
      if (!stalled) client.destroy();
    });
    client.once('close', () => upstream.destroy());
  }

  /** Destroys every connection and stops listening (bounded: no waiting on peers). */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
