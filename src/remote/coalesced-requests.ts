/**
 * SFTP requests issued in the same turn of the event loop (a listing's
 * READDIRs, a fetch's pipelined READs, the requests prompted by every reply
 * read in that turn) leave in one SSH packet and one write() instead of one
 * packet and one write each. With TCP_NODELAY every write is a segment and
 * wakes the master's sshd. They are sent at setImmediate, after all the
 * replies libuv read in that turn were handled (a tick after each read made
 * ~20 % more writes on a 5,000-file initial sync), and no later.
 *
 * SFTP is a byte stream inside the channel: ssh2 sends every request as its
 * own CHANNEL_DATA packet, and each packet costs a padding draw from the
 * CSPRNG, a cipher context and a MAC, all in JavaScript (the executable
 * cannot load ssh2's native crypto binding). A 5,000-file initial sync is
 * ~21,000 such packets: fetches of many files at once issue their OPENs,
 * READs and CLOSEs in bursts, which here become ~1,100 packets.
 *
 * This reaches into ssh2's internals (the channel's `outgoing` id and
 * packet size, the protocol's `channelData`), checked at install: anything
 * unlike the version this was written for leaves ssh2 as it is. It relies
 * on ssh2 building a fresh buffer for every request (1.17.0 does), which is
 * why package.json pins ssh2 exactly: an upgrade is a decision, made with
 * test/integration/coalesced-requests.test.ts. Nothing is
 * reordered within the channel, and the buffer never outlives the turn:
 * the channel's EOF or CLOSE and a disconnect flush it first.
 */
import type { Socket } from 'node:net';
import type { SFTPWrapper } from 'ssh2';

type Send = (channel: number, data: Buffer | string) => void;

interface SshInternals {
  _protocol?: Record<string, unknown> & { channelData?: Send };
  outgoing?: { id?: unknown; packetSize?: unknown };
}

/** Installs the coalescing on this SFTP channel, whose SSH connection writes to `sock`. */
export function coalesceRequests(sftp: SFTPWrapper, sock: Socket): void {
  const internals = sftp as unknown as SshInternals;
  const protocol = internals._protocol;
  const channel = internals.outgoing?.id;
  const packetSize = internals.outgoing?.packetSize;
  const send = protocol?.channelData;
  if (!protocol || typeof send !== 'function' || typeof channel !== 'number' || typeof packetSize !== 'number' || packetSize < 1) {
    return;
  }
  const sendNow: Send = send.bind(protocol);
  let pending: Buffer[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    const requests = pending;
    pending = [];
    // More than one packet (over the channel's packet size) still leaves in one write.
    sock.cork();
    for (const packet of packIntoPackets(requests, packetSize)) sendNow(channel, packet);
    sock.uncork();
  };
  protocol.channelData = (id: number, data: Buffer | string): void => {
    if (id !== channel) sendNow(id, data);
    else {
      if (pending.length === 0) setImmediate(flush);
      pending.push(Buffer.isBuffer(data) ? data : Buffer.from(data));
    }
  };
  // What must follow the channel's data on the wire.
  for (const method of ['channelEOF', 'channelClose', 'disconnect']) {
    const original = protocol[method];
    if (typeof original !== 'function') continue;
    protocol[method] = (...args: unknown[]): unknown => {
      flush();
      return original.apply(protocol, args);
    };
  }
}

/** Consecutive requests joined up to the channel's packet size; a request is never split (ssh2 already sized each to fit). */
export function packIntoPackets(requests: readonly Buffer[], packetSize: number): Buffer[] {
  const packets: Buffer[] = [];
  let group: Buffer[] = [];
  let length = 0;
  const close = (): void => {
    if (group.length > 0) packets.push(group.length === 1 ? group[0]! : Buffer.concat(group, length));
    group = [];
    length = 0;
  };
  for (const request of requests) {
    if (length + request.length > packetSize) close();
    group.push(request);
    length += request.length;
  }
  close();
  return packets;
}
