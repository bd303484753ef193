/**
 * Every validation of the lifecycle answers with its coded error, names what is wrong, and leaves the
 * state exactly as it was: the same rows in every table, the same allocation index counts, fsck clean.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  isVipdipError,
  SeededRandom,
  steppingClock,
  type ErrorCode,
  type VipdipError,
} from '../../src/core/index.ts';
import { Cloud, formatFinding, fsck, type VmOperation } from '../../src/lifecycle/index.ts';
import { SqliteStore } from '../../src/store/index.ts';
import { dumpStore, makeCloud, withShop, type TestCloud } from '../support/cloud.ts';

type Env = Pick<TestCloud, 'cloud' | 'store'>;

/** What must not change when an operation is refused: every row, and the indexes' counts. */
async function state(env: Env): Promise<string> {
  const { cloud, store } = env;
  return JSON.stringify({
    dump: dumpStore(store),
    pools: await cloud.listPools(),
    vnets: await cloud.listVnets(),
  });
}

/**
 * Asserts that `op` is refused with `code`, with a message naming each of `mentions`, and that the
 * state is unchanged and still clean afterwards.
 */
async function refuses(
  env: Env,
  op: () => Promise<unknown>,
  code: ErrorCode,
  ...mentions: string[]
): Promise<VipdipError> {
  const before = await state(env);
  let error: VipdipError | undefined;
  await assert.rejects(op, (e: unknown) => {
    assert.ok(isVipdipError(e), `expected a VipdipError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions)
      assert.ok(e.message.includes(m), `${JSON.stringify(e.message)} does not name ${m}`);
    error = e;
    return true;
  });
  assert.equal(await state(env), before, 'a refused operation changed the state');
  const findings = await env.store.read((r) => fsck(r));
  assert.deepEqual(findings.map(formatFinding), []);
  return error!;
}

let t: TestCloud;
let cloud: Cloud;
const vm = (name: string, service = 'shop') => ({ service, vm: name });

beforeEach(async () => {
  t = await makeCloud();
  cloud = t.cloud;
  await withShop(cloud);
});
afterEach(() => t.close());

describe('names', () => {
  test('a cloud service name that is not a lowercase DNS label is refused', async () => {
    for (const name of ['Shop', '', 'a'.repeat(64), 'café', '-shop', 'shop-', 'sh op', 'shop.web']) {
      await refuses(
        t,
        () => cloud.createService('contoso', { name }),
        'INVALID_ARGUMENT',
        JSON.stringify(name),
      );
    }
    await cloud.createService('contoso', { name: 'a'.repeat(63) });
  });

  test('a VM name that is not a DNS label is refused', async () => {
    for (const name of ['Web1', '', 'w'.repeat(64), 'wéb', 'web_1']) {
      await refuses(
        t,
        () => cloud.createVm('shop', { name, subnet: 'front' }),
        'INVALID_ARGUMENT',
        JSON.stringify(name),
      );
    }
  });

  test('subscription, network, subnet, reserved IP and host names are checked too', async () => {
    for (const name of ['', 's'.repeat(65), 'ñandú', '-contoso', 'a b']) {
      await refuses(t, () => cloud.createSubscription(name), 'INVALID_ARGUMENT', JSON.stringify(name));
    }
    await cloud.createSubscription('s'.repeat(64));
    await refuses(
      t,
      () => cloud.createVnet('contoso', { name: 'net/1', addressSpace: ['127.18.0.0/16'] }),
      'INVALID_ARGUMENT',
      'net/1',
    );
    await refuses(
      t,
      () => cloud.addSubnet('contoso', 'shop-net', { name: '', cidr: '127.16.3.0/24' }),
      'INVALID_ARGUMENT',
      'subnet',
    );
    await refuses(t, () => cloud.createReservedIp('contoso', 'ip 1'), 'INVALID_ARGUMENT', 'ip 1');
    await refuses(t, () => cloud.addHost('', 'rack1'), 'INVALID_ARGUMENT', 'host');
    await refuses(t, () => cloud.addHost('h9', 'räck'), 'INVALID_ARGUMENT', 'räck');
  });
});

describe('duplicates', () => {
  test('creating what already exists is ALREADY_EXISTS, naming it', async () => {
    await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
    await cloud.createReservedIp('contoso', 'shop-ip');
    await refuses(t, () => cloud.createSubscription('contoso'), 'ALREADY_EXISTS', 'contoso');
    await refuses(
      t,
      () => cloud.createVnet('contoso', { name: 'shop-net', addressSpace: ['127.18.0.0/16'] }),
      'ALREADY_EXISTS',
      'shop-net',
    );
    await refuses(
      t,
      () => cloud.addSubnet('contoso', 'shop-net', { name: 'front', cidr: '127.16.3.0/24' }),
      'ALREADY_EXISTS',
      'front',
    );
    await refuses(t, () => cloud.createService('contoso', { name: 'shop' }), 'ALREADY_EXISTS', 'shop');
    await refuses(
      t,
      () => cloud.createVm('shop', { name: 'web1', subnet: 'back' }),
      'ALREADY_EXISTS',
      'shop/web1',
    );
    await refuses(t, () => cloud.createReservedIp('contoso', 'shop-ip'), 'ALREADY_EXISTS', 'shop-ip');
    await refuses(
      t,
      () => cloud.reserveServiceVip('contoso', 'shop', 'shop-ip'),
      'ALREADY_EXISTS',
      'shop-ip',
    );
    await refuses(t, () => cloud.addHost('rack1-host1', 'rack1'), 'ALREADY_EXISTS', 'rack1-host1');
    await refuses(
      t,
      () =>
        cloud.createVnet('contoso', {
          name: 'other',
          addressSpace: ['127.18.0.0/16'],
          subnets: [
            { name: 'a', cidr: '127.18.1.0/24' },
            { name: 'a', cidr: '127.18.2.0/24' },
          ],
        }),
      'ALREADY_EXISTS',
      'other/a',
    );
  });

  test('a cloud service name is unique across subscriptions (its DNS label is global)', async () => {
    await cloud.createSubscription('fabrikam');
    await refuses(t, () => cloud.createService('fabrikam', { name: 'shop' }), 'ALREADY_EXISTS', 'shop');
  });

  test('the same VM name may be used in two services, and a reserved IP name in two subscriptions', async () => {
    await cloud.createService('contoso', { name: 'blog', vnet: 'shop-net' });
    await cloud.createVm('shop', { name: 'web1', subnet: 'front' }, { start: false });
    await cloud.createVm('blog', { name: 'web1', subnet: 'front' }, { start: false });
    await cloud.createSubscription('fabrikam');
    await cloud.createReservedIp('contoso', 'ip');
    await cloud.createReservedIp('fabrikam', 'ip');
  });
});

describe('address blocks', () => {
  test('a malformed CIDR is INVALID_CIDR, wherever it is given', async () => {
    for (const cidr of ['127.18.0.1/16', '127.18.0.0/33', 'garbage', '127.18.0.0', '127.18.0.0/-1', '']) {
      await refuses(
        t,
        () => cloud.createVnet('contoso', { name: 'other', addressSpace: [cidr] }),
        'INVALID_CIDR',
        JSON.stringify(cidr),
      );
      await refuses(
        t,
        () => cloud.addSubnet('contoso', 'shop-net', { name: 'x', cidr }),
        'INVALID_CIDR',
        JSON.stringify(cidr),
      );
      await refuses(t, () => cloud.addPublicPool(cidr), 'INVALID_CIDR', JSON.stringify(cidr));
    }
  });

  test('a subnet smaller than /29 or a public pool smaller than /30 is refused', async () => {
    await refuses(
      t,
      () => cloud.addSubnet('contoso', 'shop-net', { name: 'x', cidr: '127.16.3.0/30' }),
      'INVALID_CIDR',
      '/29',
    );
    await refuses(t, () => cloud.addPublicPool('127.200.0.0/31'), 'INVALID_CIDR', '/30');
    await refuses(t, () => cloud.addPublicPool('10.0.0.0/7'), 'INVALID_CIDR', '/8');
    await cloud.addSubnet('contoso', 'shop-net', { name: 'x', cidr: '127.16.3.0/29' });
  });

  test('an address space must be a non-empty list', async () => {
    await refuses(
      t,
      () => cloud.createVnet('contoso', { name: 'other', addressSpace: [] }),
      'INVALID_ARGUMENT',
      'addressSpace',
    );
  });

  test('overlapping subnets of one network are OVERLAP, naming the other subnet', async () => {
    await refuses(
      t,
      () => cloud.addSubnet('contoso', 'shop-net', { name: 'x', cidr: '127.16.1.128/25' }),
      'OVERLAP',
      'front',
    );
    await refuses(
      t,
      () => cloud.addSubnet('contoso', 'shop-net', { name: 'x', cidr: '127.16.0.0/22' }),
      'OVERLAP',
      '127.16.0.0/22',
    );
  });

  test('a new network with overlapping subnets or address spaces is not created at all', async () => {
    await refuses(
      t,
      () =>
        cloud.createVnet('contoso', {
          name: 'other',
          addressSpace: ['127.18.0.0/16'],
          subnets: [
            { name: 'a', cidr: '127.18.1.0/24' },
            { name: 'b', cidr: '127.18.1.0/25' },
          ],
        }),
      'OVERLAP',
      'subnet a',
    );
    await refuses(
      t,
      () => cloud.createVnet('contoso', { name: 'other', addressSpace: ['127.18.0.0/16', '127.18.4.0/24'] }),
      'OVERLAP',
      '127.18.4.0/24',
    );
  });

  test('a subnet outside its network address space is ADDRESS_OUT_OF_RANGE', async () => {
    await refuses(
      t,
      () => cloud.addSubnet('contoso', 'shop-net', { name: 'x', cidr: '127.99.0.0/24' }),
      'ADDRESS_OUT_OF_RANGE',
      '127.99.0.0/24',
      '127.16.0.0/16',
    );
    await refuses(
      t,
      () =>
        cloud.createVnet('contoso', {
          name: 'other',
          addressSpace: ['127.18.0.0/24'],
          subnets: [{ name: 'a', cidr: '127.18.0.0/23' }],
        }),
      'ADDRESS_OUT_OF_RANGE',
      '127.18.0.0/23',
    );
  });

  test('overlapping public pools are OVERLAP', async () => {
    await refuses(t, () => cloud.addPublicPool('127.100.5.0/24'), 'OVERLAP', '127.100.0.0/16');
    await refuses(t, () => cloud.addPublicPool('127.0.0.0/8'), 'OVERLAP', '127.100.0.0/16');
    await refuses(t, () => cloud.addPublicPool('127.100.0.0/16'), 'OVERLAP');
    await cloud.addPublicPool('127.101.0.0/24');
  });

  test('an unknown DIP or move policy is INVALID_ARGUMENT', async () => {
    const bad = { dipPolicy: 'lowest' } as unknown as { dipPolicy: 'random' };
    await refuses(
      t,
      () => cloud.createVnet('contoso', { name: 'other', addressSpace: ['127.18.0.0/16'], ...bad }),
      'INVALID_ARGUMENT',
      'lowest',
    );
    const stay = { movePolicy: 'stay' } as unknown as { movePolicy: 'keep' };
    await refuses(t, () => cloud.setVnetPolicy('contoso', 'shop-net', stay), 'INVALID_ARGUMENT', 'stay');
  });
});

describe('static DIPs', () => {
  const create = (name: string, staticDip: string, start = true) =>
    cloud.createVm('shop', { name, subnet: 'front', staticDip }, { start });

  test('a static DIP outside the subnet is ADDRESS_OUT_OF_RANGE', async () => {
    await refuses(
      t,
      () => create('db1', '127.16.2.10'),
      'ADDRESS_OUT_OF_RANGE',
      '127.16.2.10',
      '127.16.1.0/24',
    );
    await refuses(t, () => create('db1', '10.0.0.5', false), 'ADDRESS_OUT_OF_RANGE', '10.0.0.5');
  });

  test('a reserved address of the subnet is ADDRESS_RESERVED', async () => {
    for (const a of ['127.16.1.0', '127.16.1.1', '127.16.1.2', '127.16.1.3', '127.16.1.255']) {
      await refuses(t, () => create('db1', a, false), 'ADDRESS_RESERVED', a);
    }
    await create('first', '127.16.1.4');
    await create('last', '127.16.1.254');
  });

  test('a static DIP that is not an address is INVALID_ADDRESS', async () => {
    for (const a of ['not-an-ip', '127.16.1', '127.16.1.010', '127.16.1.256', ' 127.16.1.9']) {
      await refuses(t, () => create('db1', a, false), 'INVALID_ADDRESS');
    }
  });

  test('a static DIP another VM holds is ADDRESS_TAKEN when the VM is created, even while its holder is deallocated', async () => {
    await create('db1', '127.16.1.10');
    await refuses(t, () => create('db2', '127.16.1.10'), 'ADDRESS_TAKEN', '127.16.1.10');
    await refuses(t, () => create('db2', '127.16.1.10', false), 'ADDRESS_TAKEN', '127.16.1.10');
    // The address stays db1's for db1's whole life (R4), allocated or not.
    await cloud.vmOperation(vm('db1'), 'deallocate');
    await refuses(t, () => create('db2', '127.16.1.10', false), 'ADDRESS_TAKEN', '127.16.1.10');
    await cloud.vmOperation(vm('db1'), 'delete');
    await create('db2', '127.16.1.10');
    assert.equal((await cloud.getVm(vm('db2'))).dip, '127.16.1.10');
  });

  test('a static DIP that a dynamic VM drew is ADDRESS_TAKEN too', async () => {
    const web = await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
    await refuses(t, () => create('db1', web.dip!, false), 'ADDRESS_TAKEN', web.dip!);
  });

  test('changing the static DIP of an allocated VM is INVALID_TRANSITION; out of range is refused', async () => {
    await create('db1', '127.16.1.10');
    await refuses(
      t,
      () => cloud.updateVm(vm('db1'), { staticDip: '127.16.1.11' }),
      'INVALID_TRANSITION',
      'shop/db1',
    );
    await cloud.vmOperation(vm('db1'), 'deallocate');
    await refuses(t, () => cloud.updateVm(vm('db1'), { staticDip: '127.16.2.11' }), 'ADDRESS_OUT_OF_RANGE');
    await refuses(t, () => cloud.updateVm(vm('db1'), { staticDip: '127.16.1.255' }), 'ADDRESS_RESERVED');
    await cloud.updateVm(vm('db1'), { staticDip: '127.16.1.11' });
  });
});

describe('endpoints', () => {
  const http = { name: 'http', protocol: 'tcp', publicPort: 80, localPort: 8080 };
  const withEndpoints = (name: string, endpoints: unknown, service = 'shop') =>
    cloud.createVm(service, { name, subnet: 'front', endpoints }, { start: false });
  /** Refused both at creation and as an update of an existing VM. */
  async function invalid(endpoints: unknown, ...mentions: string[]): Promise<void> {
    await refuses(t, () => withEndpoints('bad', endpoints), 'INVALID_ARGUMENT', ...mentions);
    await refuses(t, () => cloud.updateVm(vm('base'), { endpoints }), 'INVALID_ARGUMENT', ...mentions);
  }

  beforeEach(async () => {
    await withEndpoints('base', []);
  });

  test('a port that is not an integer from 1 to 65535 is refused', async () => {
    for (const p of [0, 65536, -1, 1.5, '80', null, Number.NaN]) {
      await invalid([{ ...http, publicPort: p }], 'publicPort');
      if (p !== null) await invalid([{ ...http, localPort: p }], 'localPort'); // null: defaults to publicPort
    }
    await withEndpoints('edges', [
      { ...http, publicPort: 1, localPort: 65535 },
      { ...http, name: 'top', publicPort: 65535, localPort: 1 },
    ]);
  });

  test('a protocol other than tcp or udp is refused', async () => {
    await invalid([{ ...http, protocol: 'icmp' }], 'protocol', 'icmp');
  });

  test('a public port used twice in a service outside a load-balanced set is CONFLICT', async () => {
    await withEndpoints('web1', [http]);
    await refuses(
      t,
      () => withEndpoints('web2', [{ ...http, localPort: 9090 }]),
      'CONFLICT',
      'tcp/80',
      'web1',
    );
    await refuses(t, () => withEndpoints('web2', [http, { ...http, name: 'again' }]), 'CONFLICT', 'tcp/80');
    await refuses(t, () => cloud.updateVm(vm('base'), { endpoints: [http] }), 'CONFLICT', 'tcp/80');
    // The same number on another protocol is another port; another service has its own VIP.
    await withEndpoints('dns', [{ ...http, name: 'dns', protocol: 'udp' }]);
    await cloud.createService('contoso', { name: 'blog', vnet: 'shop-net' });
    await withEndpoints('web1', [http], 'blog');
  });

  test('VMs of one load-balanced set share a public port; outsiders and other ports conflict', async () => {
    const lb = { ...http, lbSet: 'web' };
    await withEndpoints('web1', [lb]);
    await withEndpoints('web2', [lb]);
    await refuses(t, () => withEndpoints('web3', [http]), 'CONFLICT', 'tcp/80');
    await refuses(t, () => withEndpoints('web3', [{ ...lb, lbSet: 'other' }]), 'CONFLICT', 'tcp/80');
    await refuses(t, () => withEndpoints('web3', [{ ...lb, publicPort: 81 }]), 'CONFLICT', 'web');
    await withEndpoints('web3', [lb]);
  });

  test('the first VM of a load-balanced set cannot use the public port twice', async () => {
    const lb = { ...http, lbSet: 'web' };
    await refuses(t, () => withEndpoints('web1', [lb, { ...lb, name: 'again' }]), 'CONFLICT', 'tcp/80');
  });

  test('a later VM of a load-balanced set cannot use the public port twice either', async () => {
    const lb = { ...http, lbSet: 'web' };
    await withEndpoints('web1', [lb]);
    await refuses(t, () => withEndpoints('web3', [lb, { ...lb, name: 'again' }]), 'CONFLICT', 'tcp/80');
    await refuses(
      t,
      () => cloud.updateVm(vm('base'), { endpoints: [lb, { ...lb, name: 'again', localPort: 8081 }] }),
      'CONFLICT',
      'tcp/80',
    );
  });

  test('a probe interval under 5 seconds is refused; 5 is accepted', async () => {
    await invalid(
      [{ ...http, probe: { protocol: 'tcp', port: 8080, intervalSeconds: 4 } }],
      'intervalSeconds',
    );
    await invalid([{ ...http, probe: { protocol: 'icmp' } }], 'probe.protocol');
    await invalid([{ ...http, probe: { protocol: 'http', path: 'health' } }], 'probe.path');
    await invalid([{ ...http, probe: { protocol: 'tcp', every: 5 } }], 'every');
    await withEndpoints('ok', [{ ...http, probe: { protocol: 'tcp', intervalSeconds: 5 } }]);
  });

  test('an idle timeout outside 4 to 30 minutes is refused; 4 and 30 are accepted', async () => {
    for (const m of [3, 31, 0, 4.5, '10'])
      await invalid([{ ...http, idleTimeoutMinutes: m }], 'idleTimeoutMinutes');
    await withEndpoints('four', [{ ...http, idleTimeoutMinutes: 4 }]);
    await cloud.updateVm(vm('four'), { endpoints: [{ ...http, idleTimeoutMinutes: 30 }] });
    assert.equal((await cloud.getVm(vm('four'))).endpoints[0]!.idleTimeoutMinutes, 30);
  });

  test('an ACL with a repeated order, a bad remote subnet or a bad action is refused', async () => {
    const rule = { order: 1, action: 'permit', remoteSubnet: '10.0.0.0/8' };
    await invalid([{ ...http, acl: [rule, { ...rule, action: 'deny' }] }], 'order 1');
    await invalid([{ ...http, acl: [{ ...rule, remoteSubnet: '10.0.0.1/8' }] }], 'remoteSubnet');
    await invalid([{ ...http, acl: [{ ...rule, remoteSubnet: 'anywhere' }] }], 'remoteSubnet');
    await invalid([{ ...http, acl: [{ ...rule, action: 'allow' }] }], 'action', 'allow');
    await invalid([{ ...http, acl: rule }], 'acl');
    await withEndpoints('acl', [{ ...http, acl: [rule, { ...rule, order: 2, action: 'deny' }] }]);
  });

  test('unknown fields, bad shapes and repeated endpoint names are refused', async () => {
    await invalid([{ ...http, publicport: 80 }], 'publicport');
    await invalid('http', 'list');
    await invalid([42], 'object');
    await invalid([http, { ...http, publicPort: 81 }], 'http', 'twice');
    await invalid([{ ...http, distribution: 'roundRobin' }], 'roundRobin');
    await invalid([{ ...http, name: 'has space' }], 'name');
    await invalid([{ ...http, proxyProtocol: 'yes' }], 'proxyProtocol');
  });
});

describe('illegal transitions', () => {
  const bad = (op: VmOperation, state: string) =>
    refuses(t, () => cloud.vmOperation(vm('web1'), op), 'INVALID_TRANSITION', 'shop/web1', `is ${state}`, op);

  test('every operation the state machine has no entry for is refused, naming the VM and its state', async () => {
    await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
    await bad('start', 'running');
    await cloud.vmOperation(vm('web1'), 'stop');
    await bad('stop', 'stopped');
    await bad('restart', 'stopped');
    await cloud.vmOperation(vm('web1'), 'deallocate');
    await bad('stop', 'deallocated');
    await bad('restart', 'deallocated');
    await bad('redeploy', 'deallocated');
    await bad('deallocate', 'deallocated');
  });
});

describe('things that do not exist', () => {
  test('an unknown subscription is NOT_FOUND', async () => {
    await refuses(
      t,
      () => cloud.createVnet('nope', { name: 'n', addressSpace: ['127.18.0.0/16'] }),
      'NOT_FOUND',
      'nope',
    );
    await refuses(t, () => cloud.createService('nope', { name: 'svc' }), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.createReservedIp('nope', 'ip'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.deleteSubscription('nope'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.listVms({ subscription: 'nope' }), 'NOT_FOUND', 'nope');
  });

  test('an unknown cloud service is NOT_FOUND', async () => {
    await refuses(t, () => cloud.createVm('nope', { name: 'web1', subnet: 'front' }), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.vmOperation(vm('web1', 'nope'), 'start'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.deleteService('nope'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.getService('nope'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.reserveServiceVip('contoso', 'nope', 'ip'), 'NOT_FOUND', 'nope');
    await cloud.createReservedIp('contoso', 'ip');
    await refuses(t, () => cloud.associateReservedIp('contoso', 'ip', 'nope'), 'NOT_FOUND', 'nope');
  });

  test('an unknown VM is NOT_FOUND', async () => {
    await refuses(t, () => cloud.vmOperation(vm('nope'), 'start'), 'NOT_FOUND', 'shop/nope');
    await refuses(t, () => cloud.vmOperation(vm('nope'), 'delete'), 'NOT_FOUND', 'shop/nope');
    await refuses(t, () => cloud.updateVm(vm('nope'), { ilpip: true }), 'NOT_FOUND', 'shop/nope');
    await refuses(t, () => cloud.getVm(vm('nope')), 'NOT_FOUND', 'shop/nope');
  });

  test('an unknown virtual network or subnet is NOT_FOUND', async () => {
    await refuses(
      t,
      () => cloud.createService('contoso', { name: 'blog', vnet: 'nope' }),
      'NOT_FOUND',
      'nope',
    );
    await refuses(
      t,
      () => cloud.addSubnet('contoso', 'nope', { name: 'x', cidr: '127.18.0.0/24' }),
      'NOT_FOUND',
    );
    await refuses(t, () => cloud.deleteVnet('contoso', 'nope'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.setVnetPolicy('contoso', 'nope', { movePolicy: 'keep' }), 'NOT_FOUND');
    await refuses(t, () => cloud.createVm('shop', { name: 'web1', subnet: 'nope' }), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.deleteSubnet('contoso', 'shop-net', 'nope'), 'NOT_FOUND', 'nope');
  });

  test('an unknown reserved IP, host, rack or pool is NOT_FOUND', async () => {
    await refuses(t, () => cloud.associateReservedIp('contoso', 'nope', 'shop'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.disassociateReservedIp('contoso', 'nope'), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.deleteReservedIp('contoso', 'nope'), 'NOT_FOUND', 'nope');
    await refuses(
      t,
      () => cloud.createService('contoso', { name: 'blog', reservedIp: 'nope' }),
      'NOT_FOUND',
      'nope',
    );
    await refuses(t, () => cloud.maintenance({ host: 'nope' }), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.maintenance({ rack: 'nope' }), 'NOT_FOUND', 'nope');
    await refuses(t, () => cloud.deletePublicPool('127.200.0.0/24'), 'NOT_FOUND', '127.200.0.0/24');
  });

  test("another subscription's cloud service answers exactly as one that does not exist", async () => {
    await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
    await cloud.createSubscription('fabrikam');
    await cloud.createReservedIp('fabrikam', 'fab-ip');
    const missing = await cloud.getService('nosuch').catch((e: unknown) => e);
    assert.ok(isVipdipError(missing, 'NOT_FOUND'));
    const asMissing = (e: unknown) => {
      assert.ok(isVipdipError(e, 'NOT_FOUND'), String(e));
      assert.equal(e.message, missing.message.replace('nosuch', 'shop'));
      return true;
    };
    const fab = { service: 'shop', vm: 'web1', subscription: 'fabrikam' };
    const attempts: (() => Promise<unknown>)[] = [
      () => cloud.getService('shop', 'fabrikam'),
      () => cloud.getVm(fab),
      () => cloud.vmOperation(fab, 'stop'),
      () => cloud.vmOperation(fab, 'delete'),
      () => cloud.updateVm(fab, { ilpip: true }),
      () => cloud.deleteService('shop', 'fabrikam'),
      () => cloud.createVm('shop', { name: 'web2', subnet: 'front' }, { subscription: 'fabrikam' }),
      () => cloud.listVms({ subscription: 'fabrikam', service: 'shop' }),
      () => cloud.associateReservedIp('fabrikam', 'fab-ip', 'shop'),
      () => cloud.reserveServiceVip('fabrikam', 'shop', 'taken'),
    ];
    for (const attempt of attempts) {
      const before = await state(t);
      await assert.rejects(attempt, asMissing);
      assert.equal(await state(t), before);
    }
    // Nor does one subscription see the other's reserved IPs or networks.
    await refuses(t, () => cloud.associateReservedIp('contoso', 'fab-ip', 'shop'), 'NOT_FOUND', 'fab-ip');
    await refuses(
      t,
      () => cloud.createService('fabrikam', { name: 'fab', vnet: 'shop-net' }),
      'NOT_FOUND',
      'shop-net',
    );
    await refuses(
      t,
      () => cloud.addSubnet('fabrikam', 'shop-net', { name: 'x', cidr: '127.16.3.0/24' }),
      'NOT_FOUND',
      'shop-net',
    );
    await cloud.createReservedIp('contoso', 'shop-ip');
    await refuses(
      t,
      () => cloud.createService('fabrikam', { name: 'fab', reservedIp: 'shop-ip' }),
      'NOT_FOUND',
      'shop-ip',
    );
    // Its owner still sees it.
    assert.equal((await cloud.getService('shop', 'contoso')).name, 'shop');
    assert.equal((await cloud.getVm({ ...fab, subscription: 'contoso' })).state, 'running');
  });
});

describe('exhaustion', () => {
  test('a full /29 subnet refuses the fourth VM, naming the subnet, and changes nothing', async () => {
    await cloud.addSubnet('contoso', 'shop-net', { name: 'tiny', cidr: '127.16.3.0/29' });
    for (const n of ['a', 'b', 'c']) await cloud.createVm('shop', { name: n, subnet: 'tiny' });
    const exhausted = (e: unknown) => {
      assert.ok(isVipdipError(e, 'POOL_EXHAUSTED'), String(e));
      assert.match(e.message, /shop-net\/tiny/);
      assert.match(String(e.data.pool), /shop-net\/tiny/);
      return true;
    };
    let before = await state(t);
    await assert.rejects(cloud.createVm('shop', { name: 'd', subnet: 'tiny' }), exhausted);
    assert.equal(await state(t), before, 'the VM is not created either');
    await cloud.createVm('shop', { name: 'd', subnet: 'tiny' }, { start: false });
    before = await state(t);
    await assert.rejects(cloud.vmOperation(vm('d'), 'start'), exhausted);
    assert.equal(await state(t), before);
    await refuses(t, () => cloud.vmOperation(vm('d'), 'start'), 'POOL_EXHAUSTED', 'shop-net/tiny');
    // The subnet is full, so a redeploy has nowhere else to draw from: it keeps the DIP.
    const a = await cloud.getVm(vm('a'));
    const moved = (await cloud.vmOperation(vm('a'), 'redeploy'))!;
    assert.equal(moved.dip, a.dip);
    assert.notEqual(moved.host, a.host);
    await cloud.vmOperation(vm('a'), 'deallocate');
    const d = (await cloud.vmOperation(vm('d'), 'start'))!;
    assert.equal(d.dip, a.dip, 'the one address freed is the one drawn');
  });

  test('a full public pool refuses VIPs, ILPIPs and reserved IPs, naming the pool, and changes nothing', async () => {
    const small = await makeCloud({ pools: ['127.100.0.0/30'] }); // two usable addresses
    try {
      const c = small.cloud;
      await withShop(c);
      const pool = '127.100.0.0/30';
      await c.createReservedIp('contoso', 'ip1');
      await c.createReservedIp('contoso', 'ip2');
      await refuses(small, () => c.createReservedIp('contoso', 'ip3'), 'POOL_EXHAUSTED', pool);
      await refuses(
        small,
        () => c.createVm('shop', { name: 'web1', subnet: 'front' }),
        'POOL_EXHAUSTED',
        pool,
      );
      await c.createVm('shop', { name: 'web1', subnet: 'front' }, { start: false });
      const e = await refuses(small, () => c.vmOperation(vm('web1'), 'start'), 'POOL_EXHAUSTED', pool);
      assert.match(String(e.data.pool), /127\.100\.0\.0\/30/, 'the error names the pool for the API');

      await c.deleteReservedIp('contoso', 'ip2'); // one address free: a VIP, not a VIP and an ILPIP
      await c.updateVm(vm('web1'), { ilpip: true });
      await refuses(small, () => c.vmOperation(vm('web1'), 'start'), 'POOL_EXHAUSTED', pool);
      await c.updateVm(vm('web1'), { ilpip: false });
      await c.vmOperation(vm('web1'), 'start');
      await refuses(small, () => c.updateVm(vm('web1'), { ilpip: true }), 'POOL_EXHAUSTED', pool);

      // Associating ip1 gives the drawn VIP back; disassociating it again needs a fresh VIP.
      await c.associateReservedIp('contoso', 'ip1', 'shop');
      await c.createReservedIp('contoso', 'ip2');
      await refuses(small, () => c.disassociateReservedIp('contoso', 'ip1'), 'POOL_EXHAUSTED', pool);
      assert.equal((await c.getService('shop')).reservedIp, 'ip1');
    } finally {
      await small.close();
    }
  });
});

describe('resources in use', () => {
  test('deleting an associated reserved IP is IN_USE, naming the service', async () => {
    await cloud.createReservedIp('contoso', 'shop-ip');
    await cloud.associateReservedIp('contoso', 'shop-ip', 'shop');
    await refuses(t, () => cloud.deleteReservedIp('contoso', 'shop-ip'), 'IN_USE', 'shop-ip', 'shop');
  });

  test('a reserved IP associated with one service cannot be given to another', async () => {
    await cloud.createReservedIp('contoso', 'shop-ip');
    await cloud.associateReservedIp('contoso', 'shop-ip', 'shop');
    await cloud.createService('contoso', { name: 'blog', vnet: 'shop-net' });
    await refuses(t, () => cloud.associateReservedIp('contoso', 'shop-ip', 'blog'), 'IN_USE', 'shop');
    await refuses(
      t,
      () => cloud.createService('contoso', { name: 'news', reservedIp: 'shop-ip' }),
      'IN_USE',
      'shop-ip',
    );
    await cloud.createReservedIp('contoso', 'other-ip');
    await refuses(t, () => cloud.associateReservedIp('contoso', 'other-ip', 'shop'), 'CONFLICT', 'shop-ip');
    // Associating it again with its own service is a no-op, not an error.
    await cloud.associateReservedIp('contoso', 'shop-ip', 'shop');
  });

  test('reserving a VIP that does not exist, or disassociating a free reserved IP, is CONFLICT', async () => {
    await refuses(t, () => cloud.reserveServiceVip('contoso', 'shop', 'shop-ip'), 'CONFLICT', 'shop');
    await cloud.createReservedIp('contoso', 'free-ip');
    await refuses(t, () => cloud.disassociateReservedIp('contoso', 'free-ip'), 'CONFLICT', 'free-ip');
  });

  test('deleting a public pool with bound addresses is IN_USE; an empty one can go', async () => {
    await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
    await refuses(t, () => cloud.deletePublicPool('127.100.0.0/16'), 'IN_USE', '127.100.0.0/16');
    await cloud.addPublicPool('127.101.0.0/24');
    await cloud.deletePublicPool('127.101.0.0/24');
  });

  test('deleting a subnet with VMs, even deallocated ones, is IN_USE', async () => {
    await cloud.createVm('shop', { name: 'web1', subnet: 'front' }, { start: false });
    await refuses(t, () => cloud.deleteSubnet('contoso', 'shop-net', 'front'), 'IN_USE', 'front');
    await cloud.deleteSubnet('contoso', 'shop-net', 'back');
  });

  test('deleting a network a service uses, or a subscription with resources, is IN_USE', async () => {
    await refuses(t, () => cloud.deleteVnet('contoso', 'shop-net'), 'IN_USE', 'shop');
    await refuses(t, () => cloud.deleteSubscription('contoso'), 'IN_USE', 'contoso');
  });

  test('a VM of a service bound to no network, or with an empty workload, is INVALID_ARGUMENT', async () => {
    await cloud.createService('contoso', { name: 'bare' });
    await refuses(
      t,
      () => cloud.createVm('bare', { name: 'web1', subnet: 'front' }),
      'INVALID_ARGUMENT',
      'bare',
    );
    await refuses(
      t,
      () => cloud.createVm('shop', { name: 'web1', subnet: 'front', workload: '' }),
      'INVALID_ARGUMENT',
      'workload',
    );
  });
});

describe('hosts', () => {
  /** A cloud without the default fabric, so that hosts can run out. */
  async function bareFabric(): Promise<Env & { close(): Promise<void> }> {
    const dir = mkdtempSync(join(tmpdir(), 'vipdip-test-'));
    const store = await SqliteStore.open(join(dir, 'state.db'));
    const c = await Cloud.open(store, {
      random: new SeededRandom(7),
      clock: steppingClock(),
      defaultPublicPools: ['127.100.0.0/16'],
      defaultFabric: false,
    });
    return {
      cloud: c,
      store,
      close: async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  test('with no host, starting a VM is NO_HOST and changes nothing', async () => {
    const env = await bareFabric();
    try {
      assert.deepEqual(await env.cloud.listHosts(), []);
      await withShop(env.cloud);
      await refuses(env, () => env.cloud.createVm('shop', { name: 'web1', subnet: 'front' }), 'NO_HOST');
    } finally {
      await env.close();
    }
  });

  test('maintenance or redeploy with no other host is NO_HOST and changes nothing', async () => {
    const env = await bareFabric();
    try {
      const c = env.cloud;
      await withShop(c);
      await c.addHost('solo', 'rack1');
      await c.createVm('shop', { name: 'web1', subnet: 'front' });
      await c.createVm('shop', { name: 'web2', subnet: 'front' }, { start: false });
      await refuses(env, () => c.maintenance({ host: 'solo' }), 'NO_HOST');
      await refuses(env, () => c.maintenance({ rack: 'rack1' }), 'NO_HOST');
      await refuses(env, () => c.vmOperation(vm('web1'), 'redeploy'), 'NO_HOST');
      await c.addHost('spare', 'rack2');
      const moved = await c.maintenance({ host: 'solo' });
      assert.deepEqual(
        moved.map((v) => [v.name, v.host]),
        [['web1', 'spare']],
      );
    } finally {
      await env.close();
    }
  });

  test('with the default fabric, maintenance of rack1 and then rack2 moves every VM across', async () => {
    for (const n of ['web1', 'web2', 'web3']) await cloud.createVm('shop', { name: n, subnet: 'front' });
    await cloud.maintenance({ rack: 'rack1' });
    for (const v of await cloud.listVms()) assert.equal(v.rack, 'rack2');
    await cloud.maintenance({ rack: 'rack2' });
    for (const v of await cloud.listVms()) assert.equal(v.rack, 'rack1');
    const findings = await t.store.read((r) => fsck(r));
    assert.deepEqual(findings.map(formatFinding), []);
  });
});
