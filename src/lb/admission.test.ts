import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIpv4 } from '../core/index.ts';
import { compileAcl } from './acl.ts';
import {
  Admission,
  REFUSE_ACL,
  REFUSE_CLIENT_LIMIT,
  REFUSE_ENDPOINT_LIMIT,
  REFUSE_NO_BACKEND,
  ipv4FromSocket,
  type EndpointPolicy,
} from './admission.ts';
import { PassiveHealth, backendKey } from './passive.ts';
import { PickerSnapshot } from './picker.ts';

const VIP = parseIpv4('127.100.0.1');
const backends = [1, 2, 3].map((i) => ({
  id: `web${i}`,
  address: parseIpv4(`127.16.1.${i + 10}`),
  port: 8000,
  healthy: true,
}));
const policy = (over: Partial<EndpointPolicy> = {}): EndpointPolicy => ({
  picker: PickerSnapshot.build({ backends, mode: 'fiveTuple', tableSize: 251 }),
  acl: compileAcl([]),
  snat: new Map(),
  preserveClient: true,
  maxFlows: 1000,
  maxFlowsPerClient: 1000,
  ...over,
});
const client = parseIpv4('127.0.0.1');

describe('admission of new flows', () => {
  test('an admitted flow gets a backend and counts until released', () => {
    const a = new Admission(VIP, 8080, 6, policy());
    const b = a.admit(client, 40000);
    assert.ok(typeof b === 'object' && b.host.startsWith('127.16.1.'));
    assert.equal(a.counters.active, 1);
    a.release(client);
    assert.equal(a.counters.active, 0);
    assert.equal(a.counters.accepted, 1);
  });

  test('the ACL is checked before anything else, even with no backend to choose', () => {
    const a = new Admission(
      VIP,
      8080,
      6,
      policy({
        acl: compileAcl([{ order: 1, action: 'permit', remoteSubnet: '127.0.0.2/32' }]),
        picker: PickerSnapshot.build({ backends: [], mode: 'fiveTuple' }),
      }),
    );
    assert.equal(a.admit(client, 1), REFUSE_ACL);
    assert.equal(a.admit(parseIpv4('127.0.0.2'), 1), REFUSE_NO_BACKEND);
    assert.deepEqual([a.counters.deniedAcl, a.counters.noBackend, a.counters.active], [1, 1, 0]);
  });

  test('a client over its own limit is refused while other clients are still admitted', () => {
    const a = new Admission(VIP, 8080, 6, policy({ maxFlowsPerClient: 2, maxFlows: 3 }));
    assert.equal(typeof a.admit(client, 1), 'object');
    assert.equal(typeof a.admit(client, 2), 'object');
    assert.equal(a.admit(client, 3), REFUSE_CLIENT_LIMIT);
    const other = parseIpv4('127.0.0.9');
    assert.equal(typeof a.admit(other, 1), 'object');
    assert.equal(a.admit(parseIpv4('127.0.0.10'), 1), REFUSE_ENDPOINT_LIMIT);
    a.release(client);
    assert.equal(typeof a.admit(client, 4), 'object');
    assert.equal(a.counters.overLimit, 2);
  });

  test('a known DIP leaves from its VIP; anyone else from its own address, when preserved', () => {
    const dip = parseIpv4('127.16.2.5');
    const a = new Admission(VIP, 8080, 6, policy({ snat: new Map([[dip, '127.100.0.9']]) }));
    assert.equal(a.sourceFor(dip, '127.16.2.5'), '127.100.0.9');
    assert.equal(a.sourceFor(client, '127.0.0.1'), '127.0.0.1');
    a.policy = policy({ preserveClient: false });
    assert.equal(a.sourceFor(client, '127.0.0.1'), undefined);
  });

  test('a new policy applies to the next flow, and releases of older flows still count down', () => {
    const a = new Admission(VIP, 8080, 6, policy());
    assert.equal(typeof a.admit(client, 1), 'object');
    a.policy = policy({ picker: PickerSnapshot.build({ backends: [], mode: 'fiveTuple' }) });
    assert.equal(a.admit(client, 2), REFUSE_NO_BACKEND);
    a.release(client);
    assert.equal(a.counters.active, 0);
  });
});

describe('addresses off the socket', () => {
  const cases: [string, number][] = [
    ['127.0.0.1', 0x7f000001],
    ['0.0.0.0', 0],
    ['255.255.255.255', 0xffffffff],
    ['::ffff:127.16.1.2', 0x7f100102],
    ['::FFFF:10.0.0.1', 0x0a000001],
    ['::1', -1],
    ['fe80::1', -1],
    ['1.2.3', -1],
    ['1.2.3.256', -1],
    ['1..2.3', -1],
    ['1.2.3.4.5', -1],
    ['1234.1.1.1', -1],
    ['', -1],
  ];
  for (const [text, want] of cases) {
    test(`${JSON.stringify(text)} reads as ${want}`, () => assert.equal(ipv4FromSocket(text), want));
  }

  test('a backend tripped by passive health gets no new flow while another is healthy', () => {
    const passive = new PassiveHealth({ now: () => 0 });
    const a = new Admission(VIP, 8080, 6, policy({ passive }));
    const victim = a.admit(parseIpv4('127.0.0.1'), 40000);
    assert.ok(typeof victim !== 'number');
    a.release(parseIpv4('127.0.0.1'));
    for (let i = 0; i < 3; i++) passive.failure(backendKey(victim.address, victim.port));
    for (let port = 40000; port < 40200; port++) {
      const b = a.admit(parseIpv4('127.0.0.1'), port);
      assert.ok(typeof b !== 'number' && b.id !== victim.id);
    }
  });

  test('a failed flow is redispatched to a backend it has not tried, until none is left', () => {
    const a = new Admission(VIP, 8080, 6, policy());
    const src = parseIpv4('127.0.0.1');
    const first = a.admit(src, 41000);
    assert.ok(typeof first !== 'number');
    const second = a.redispatch(src, 41000, [first])!;
    const third = a.redispatch(src, 41000, [first, second])!;
    assert.equal(new Set([first.id, second.id, third.id]).size, 3);
    assert.equal(a.redispatch(src, 41000, [first, second, third]), undefined);
  });
});
