import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decode, encode, TRUNCATED_RESPONSE, type OptAnswer, type Packet, type RecordType } from 'dns-packet';
import { RCODE, answerMessage, encodeForUdp, type Reply } from './answer.ts';
import { buildZoneTable } from './zones.ts';

const TABLE = buildZoneTable(
  {
    services: [{ name: 'shop', vip: '127.100.0.7' }],
    vms: [
      {
        subscription: 'contoso',
        vnet: 'shop-net',
        service: 'shop',
        name: 'web1',
        dip: '127.16.1.9',
        ilpip: null,
        ilpipEnabled: false,
      },
    ],
  },
  {
    publicZone: 'cloudapp.vipdip.test',
    internalZone: 'internal.vipdip.test',
    ttlSeconds: 5,
    nsAddress: null,
  },
  undefined,
  Date.UTC(2026, 0, 1),
);
const EDNS: OptAnswer = {
  type: 'OPT',
  name: '.',
  udpPayloadSize: 4096,
  extendedRcode: 0,
  ednsVersion: 0,
  flags: 0,
  flag_do: false,
  options: [],
};

const query = (name: string, type: RecordType = 'A', extra: Partial<Packet> = {}) =>
  encode({ type: 'query', id: 4242, questions: [{ type, name }], ...extra });
const ask = (msg: Buffer) => {
  const reply = answerMessage(msg, TABLE);
  assert.ok(reply !== null, 'a reply');
  const wire = encodeForUdp(reply);
  assert.ok(wire !== null);
  const r = decode(wire);
  return { reply, r, rcode: (r.flags ?? 0) & 0xf };
};

describe('answers', () => {
  test('an A question gets the address, the question echoed in its own case, and AA', () => {
    const { r, rcode } = ask(query('Web1.SHOP.Internal.vipdip.test'));
    assert.equal(rcode, RCODE.NOERROR);
    assert.equal(r.id, 4242);
    assert.ok(r.flag_aa);
    assert.equal(r.questions?.[0]?.name, 'Web1.SHOP.Internal.vipdip.test');
    assert.deepEqual(
      r.answers?.map((a) => [a.name, a.type, 'data' in a ? a.data : undefined]),
      [['Web1.SHOP.Internal.vipdip.test', 'A', '127.16.1.9']],
    );
  });

  test('an unknown name in a zone is NXDOMAIN with the zone SOA; outside the zones REFUSED', () => {
    const nx = ask(query('db9.shop.internal.vipdip.test'));
    assert.equal(nx.rcode, RCODE.NXDOMAIN);
    assert.equal(nx.r.authorities?.[0]?.type, 'SOA');
    assert.equal(nx.r.authorities?.[0]?.name, 'internal.vipdip.test');
    const out = ask(query('example.com'));
    assert.equal(out.rcode, RCODE.REFUSED);
    assert.equal(out.r.flag_aa, false);
  });

  test('another type on an existing name is NODATA with the SOA', () => {
    for (const type of ['AAAA', 'MX', 'TXT'] as const) {
      const { r, rcode } = ask(query('shop.cloudapp.vipdip.test', type));
      assert.equal(rcode, RCODE.NOERROR);
      assert.equal(r.answers?.length, 0);
      assert.equal(r.authorities?.[0]?.type, 'SOA');
    }
  });

  test('the apex answers SOA and NS', () => {
    assert.equal(ask(query('cloudapp.vipdip.test', 'SOA')).r.answers?.[0]?.type, 'SOA');
    assert.deepEqual(
      ask(query('cloudapp.vipdip.test', 'NS')).r.answers?.map((a) => ('data' in a ? a.data : null)),
      ['ns.internal.vipdip.test'],
    );
  });

  test('an EDNS query gets an OPT record; an unknown EDNS version gets BADVERS', () => {
    const ok = ask(query('shop.cloudapp.vipdip.test', 'A', { additionals: [EDNS] }));
    assert.equal(ok.r.additionals?.[0]?.type, 'OPT');
    const bad = ask(query('shop.cloudapp.vipdip.test', 'A', { additionals: [{ ...EDNS, ednsVersion: 1 }] }));
    const opt = bad.r.additionals?.[0];
    assert.ok(opt?.type === 'OPT');
    assert.equal((opt.extendedRcode << 4) | bad.rcode, RCODE.BADVERS);
  });

  test('a reply larger than the client accepts over UDP loses its records and sets TC', () => {
    const { reply } = ask(query('shop.cloudapp.vipdip.test'));
    const small: Reply = { ...reply, udpLimit: 40 };
    const r = decode(encodeForUdp(small)!);
    assert.ok(((r.flags ?? 0) & TRUNCATED_RESPONSE) !== 0);
    assert.equal(r.answers?.length, 0);
    assert.equal(r.questions?.[0]?.name, 'shop.cloudapp.vipdip.test');
    const whole = decode(encodeForUdp(reply)!);
    assert.equal(whole.flag_tc, false);
  });

  test('an opcode other than QUERY is NOTIMP, and zone transfers are REFUSED', () => {
    const notify = query('cloudapp.vipdip.test', 'SOA');
    notify.writeUInt16BE(4 << 11, 2); // opcode NOTIFY
    assert.equal(ask(notify).rcode, RCODE.NOTIMP);
    assert.equal(ask(query('cloudapp.vipdip.test', 'AXFR')).rcode, RCODE.REFUSED);
  });

  test('malformed messages are dropped or answered FORMERR', () => {
    assert.equal(answerMessage(Buffer.alloc(0), TABLE), null, 'empty');
    assert.equal(answerMessage(Buffer.alloc(11), TABLE), null, 'shorter than a header');
    const response = encode({
      type: 'response',
      id: 1,
      questions: [{ type: 'A', name: 'shop.cloudapp.vipdip.test' }],
    });
    assert.equal(answerMessage(response, TABLE), null, 'a response is never answered');
    const full = query('shop.cloudapp.vipdip.test');
    const cases: [string, Buffer][] = [
      ['truncated question', full.subarray(0, full.length - 3)],
      ['no question', encode({ type: 'query', id: 7, questions: [] })],
      [
        'two questions',
        encode({
          type: 'query',
          id: 7,
          questions: [
            { type: 'A', name: 'a' },
            { type: 'A', name: 'b' },
          ],
        }),
      ],
      ['absurd counts', Buffer.from([0, 7, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255])],
      // A name whose first label points at itself: dns-packet refuses pointers that do not go back.
      ['compression loop', Buffer.concat([full.subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])])],
      // Two pointers at each other.
      ['pointer cycle', Buffer.concat([full.subarray(0, 12), Buffer.from([0xc0, 14, 0xc0, 12, 0, 1, 0, 1])])],
      // One label "shop.cloudapp" would otherwise be looked up, and echoed, as two.
      [
        'a dot inside a label',
        Buffer.concat([
          full.subarray(0, 12),
          Buffer.from('\x0dshop.cloudapp\x06vipdip\x04test\x00\x00\x01\x00\x01', 'latin1'),
        ]),
      ],
      [
        'bytes that are not UTF-8',
        Buffer.concat([full.subarray(0, 12), Buffer.from([2, 0xff, 0xfe, 0, 0, 1, 0, 1])]),
      ],
    ];
    for (const [what, msg] of cases) {
      const reply = answerMessage(msg, TABLE);
      assert.ok(reply !== null, what);
      assert.equal((reply.packet.flags ?? 0) & 0xf, RCODE.FORMERR, what);
      assert.equal(reply.packet.id, msg.readUInt16BE(0), `${what}: the ID is echoed`);
    }
  });

  test('a header with counts of 65535 is refused before anything is decoded', () => {
    const msg = Buffer.from([0, 7, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]);
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) answerMessage(msg, TABLE);
    assert.ok(performance.now() - t0 < 200, 'well under a millisecond each');
  });
});
