import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decode, encode, type OptAnswer, type Packet } from 'dns-packet';
import { RCODE, answerMessage, encodeForUdp } from './answer.ts';
import {
  SCOPE_ALL,
  SCOPE_INTERNET,
  SCOPE_OPTION_CODE,
  formatScope,
  parseScope,
  scopeOfOptions,
  scopeQuery,
  unscopeReply,
  vnetScope,
  type DnsScope,
} from './scope.ts';
import { buildZoneTable } from './zones.ts';

const TABLE = buildZoneTable(
  {
    services: [
      { name: 'shop', vip: '127.100.0.7' },
      { name: 'blog', vip: '127.100.0.9' },
    ],
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
      {
        subscription: 'fabrikam',
        vnet: 'blog-net',
        service: 'blog',
        name: 'www1',
        dip: '127.32.1.4',
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
const SHOP_NET = vnetScope('contoso', 'shop-net');
const BLOG_NET = vnetScope('fabrikam', 'blog-net');
const WEB1 = 'web1.shop.internal.vipdip.test';
const WWW1 = 'www1.blog.internal.vipdip.test';

const opt = (options: { code: number; data: Buffer }[], udpPayloadSize = 1232): OptAnswer => ({
  type: 'OPT',
  name: '.',
  udpPayloadSize,
  extendedRcode: 0,
  ednsVersion: 0,
  flags: 0,
  flag_do: false,
  options: options as OptAnswer['options'],
});
const scopeOpt = (text: string) => ({ code: SCOPE_OPTION_CODE, data: Buffer.from(text, 'latin1') });
const query = (name: string, extra: Partial<Packet> = {}) =>
  encode({ type: 'query', id: 4242, flags: 0x0100, questions: [{ type: 'A', name }], ...extra });

/** The server's answer to these bytes: the rcode and the A records. */
function serve(msg: Buffer): { rcode: number; a: string[]; packet: ReturnType<typeof decode>; wire: Buffer } {
  const reply = answerMessage(msg, TABLE);
  assert.ok(reply !== null);
  const wire = encodeForUdp(reply);
  assert.ok(wire !== null);
  const packet = decode(wire);
  return {
    rcode: (packet.flags ?? 0) & 0xf,
    a: (packet.answers ?? []).flatMap((r) => (r.type === 'A' ? [r.data] : [])),
    packet,
    wire,
  };
}

/** A client's query through the relay for `scope`, answered, and the reply as the client gets it. */
function relayed(msg: Buffer, scope: DnsScope) {
  const scoped = scopeQuery(msg, scope);
  assert.ok(scoped !== undefined, 'the relay passes the query on');
  const served = serve(scoped.query);
  const wire = scoped.addedOpt ? unscopeReply(served.wire) : served.wire;
  assert.ok(wire !== undefined);
  const packet = decode(wire);
  return {
    rcode: (packet.flags ?? 0) & 0xf,
    a: (packet.answers ?? []).flatMap((r) => (r.type === 'A' ? [r.data] : [])),
    packet,
  };
}

describe('DNS scope', () => {
  test('the option text names a VNet or the internet; anything else reads as the internet', () => {
    assert.equal(formatScope(SHOP_NET), 'vnet contoso/shop-net');
    assert.equal(formatScope(SCOPE_INTERNET), 'internet');
    assert.deepEqual(parseScope(Buffer.from('vnet contoso/shop-net')), SHOP_NET);
    for (const bad of ['internet', 'vnet contoso', 'vnet a/b/c', 'vnet a/b ', '', 'all'])
      assert.deepEqual(parseScope(Buffer.from(bad)), SCOPE_INTERNET, bad);
    assert.deepEqual(parseScope(undefined), SCOPE_INTERNET);
  });

  test('several scope options narrow to what all of them allow; other options are no scope', () => {
    const o = (t: string) => scopeOpt(t);
    assert.deepEqual(scopeOfOptions([]), SCOPE_ALL);
    assert.deepEqual(scopeOfOptions([{ code: 10, data: Buffer.alloc(8) }]), SCOPE_ALL);
    assert.deepEqual(scopeOfOptions([o('vnet contoso/shop-net'), o('vnet contoso/shop-net')]), SHOP_NET);
    assert.deepEqual(
      scopeOfOptions([o('vnet contoso/shop-net'), o('vnet fabrikam/blog-net')]),
      SCOPE_INTERNET,
    );
    assert.deepEqual(scopeOfOptions([o('vnet contoso/shop-net'), o('internet')]), SCOPE_INTERNET);
    assert.deepEqual(scopeOfOptions([o('internet'), o('vnet contoso/shop-net')]), SCOPE_INTERNET);
    assert.deepEqual(scopeOfOptions([o('garbage')]), SCOPE_INTERNET);
  });

  test('straight to the server: no option gets every name, as before; an option only narrows', () => {
    assert.deepEqual(serve(query(WEB1)).a, ['127.16.1.9']);
    assert.deepEqual(serve(query(WWW1)).a, ['127.32.1.4']);
    const asA = (name: string, ...texts: string[]) =>
      serve(query(name, { additionals: [opt(texts.map(scopeOpt))] }));
    assert.deepEqual(asA(WEB1, 'vnet contoso/shop-net').a, ['127.16.1.9']);
    // A query scoped to shop-net never gets blog-net's names, whatever else it claims.
    for (const claims of [
      ['vnet contoso/shop-net'],
      ['vnet contoso/shop-net', 'vnet fabrikam/blog-net'],
      ['vnet fabrikam/blog-net', 'vnet contoso/shop-net'],
      ['vnet contoso/shop-net', 'garbage'],
    ]) {
      const r = asA(WWW1, ...claims);
      assert.equal(r.rcode, RCODE.NXDOMAIN, claims.join(' + '));
      assert.deepEqual(r.a, []);
    }
    assert.equal(asA(WEB1, 'internet').rcode, RCODE.NXDOMAIN);
    assert.equal(asA(WEB1, 'not a scope').rcode, RCODE.NXDOMAIN);
    assert.deepEqual(asA('shop.cloudapp.vipdip.test', 'internet').a, ['127.100.0.7']);
  });

  test('the server honours the option and never echoes it', () => {
    const r = serve(query(WEB1, { additionals: [opt([scopeOpt('vnet contoso/shop-net')])] }));
    const o = r.packet.additionals?.find((a) => a.type === 'OPT');
    assert.ok(o?.type === 'OPT');
    assert.deepEqual(o.options, []);
  });

  test('through the relay: a VNet resolves its own VMs, another VNet and the internet get NXDOMAIN', () => {
    assert.deepEqual(relayed(query(WEB1), SHOP_NET).a, ['127.16.1.9']);
    assert.equal(relayed(query(WEB1), BLOG_NET).rcode, RCODE.NXDOMAIN);
    assert.deepEqual(relayed(query(WWW1), BLOG_NET).a, ['127.32.1.4']);
    assert.equal(relayed(query(WEB1), SCOPE_INTERNET).rcode, RCODE.NXDOMAIN);
    assert.deepEqual(relayed(query('shop.cloudapp.vipdip.test'), SCOPE_INTERNET).a, ['127.100.0.7']);
    assert.deepEqual(relayed(query('shop.cloudapp.vipdip.test'), BLOG_NET).a, ['127.100.0.7']);
  });

  test('a client cannot forge its way past the relay: its own scope options are removed', () => {
    const forged = query(WEB1, {
      additionals: [opt([scopeOpt('vnet contoso/shop-net'), scopeOpt('bogus')])],
    });
    assert.equal(relayed(forged, BLOG_NET).rcode, RCODE.NXDOMAIN);
    const scoped = scopeQuery(forged, BLOG_NET)!;
    const o = decode(scoped.query).additionals?.find((a) => a.type === 'OPT');
    assert.ok(o?.type === 'OPT');
    assert.deepEqual(
      o.options.map((x) => [x.code, x.data?.toString()]),
      [[SCOPE_OPTION_CODE, 'vnet fabrikam/blog-net']],
    );
  });

  test('a query without EDNS gets no OPT record back, and one with EDNS keeps its own options and size', () => {
    const plain = relayed(query(WEB1), SHOP_NET);
    assert.equal(plain.packet.additionals?.length ?? 0, 0);
    assert.equal(plain.packet.id, 4242);
    assert.equal(plain.packet.flag_rd, true);
    const cookie = { code: 10, data: Buffer.from('0123456789abcdef', 'latin1') };
    const withEdns = query(WEB1, { additionals: [opt([cookie], 1232)] });
    const scoped = scopeQuery(withEdns, SHOP_NET)!;
    assert.equal(scoped.addedOpt, false);
    const o = decode(scoped.query).additionals?.find((a) => a.type === 'OPT');
    assert.ok(o?.type === 'OPT');
    assert.equal(o.udpPayloadSize, 1232);
    assert.deepEqual(
      o.options.map((x) => x.code),
      [10, SCOPE_OPTION_CODE],
    );
    assert.equal(relayed(withEdns, SHOP_NET).packet.additionals?.[0]?.type, 'OPT');
  });

  test('the question goes through byte for byte, in its own case', () => {
    const msg = query('Web1.SHOP.internal.vipdip.test');
    const scoped = scopeQuery(msg, SHOP_NET)!.query;
    // The same bytes but ARCOUNT (one more: the OPT record added after them).
    assert.deepEqual(scoped.subarray(0, 10), msg.subarray(0, 10));
    assert.equal(scoped.readUInt16BE(10), 1);
    assert.deepEqual(scoped.subarray(12, msg.length), msg.subarray(12));
    assert.equal(relayed(msg, SHOP_NET).packet.questions?.[0]?.name, 'Web1.SHOP.internal.vipdip.test');
  });

  test('what the relay cannot parse it does not pass on, and it never passes a query unscoped', () => {
    const full = query(WEB1);
    for (const [what, msg] of [
      ['shorter than a header', Buffer.alloc(11)],
      ['truncated question', full.subarray(0, full.length - 3)],
      ['trailing bytes', Buffer.concat([full, Buffer.from([0])])],
      ['a label past the end', Buffer.concat([full.subarray(0, 12), Buffer.from([40, 1, 2])])],
      ['counts beyond the message', Buffer.from([0, 7, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255])],
      ['two OPT records', query(WEB1, { additionals: [opt([]), opt([])] })],
    ] as const) {
      assert.equal(scopeQuery(msg, SHOP_NET), undefined, what);
    }
    assert.equal(scopeQuery(full, SCOPE_ALL), undefined, 'the relay always names a scope');
  });
});
