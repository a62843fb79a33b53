/** Joining requests into packets: order kept, none split, none over the channel's packet size. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packIntoPackets } from '../../src/remote/coalesced-requests.js';

describe('packIntoPackets', () => {
  it('joins consecutive requests up to the packet size, in order, without splitting one', () => {
    const requests = [3, 4, 2, 6, 1, 1].map((n, i) => Buffer.alloc(n, 65 + i));
    const packets = packIntoPackets(requests, 7);
    assert.deepEqual(
      packets.map((p) => p.toString()),
      ['AAA' + 'BBBB', 'CC', 'DDDDDD' + 'E', 'F'],
    );
    assert.deepEqual(Buffer.concat(packets), Buffer.concat(requests));
  });

  it('a single request is passed on as it is; none gives no packet', () => {
    const one = Buffer.from('x');
    assert.equal(packIntoPackets([one], 10)[0], one);
    assert.deepEqual(packIntoPackets([], 10), []);
  });
});
