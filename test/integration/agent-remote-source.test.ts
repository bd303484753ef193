/**
 * A standalone agent's source (the HTTP API and its event stream) and `vipdip up`'s in-process source
 * give the agent the same desired state for the same cloud: listeners, backends, probes, source NAT,
 * workloads, and the VMs and VNets (with their subnets' CIDRs) the netns driver builds hosts from.
 * The cloud has two subscriptions with overlapping address plans, static and dynamic DIPs, ILPIPs, a
 * reserved IP, TCP and UDP endpoints with probes and ACLs, a stopped and a deallocated VM. After
 * changes that touch VNets (a subnet added, a VM in it), the remote source follows on the stream,
 * and it lists the VNets again only when an event of theirs came.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Tokens } from '../../src/api/auth.ts';
import type { Api } from '../../src/api/context.ts';
import { buildServer } from '../../src/api/server.ts';
import { desiredState, type AgentScope } from '../../src/agent/desired.ts';
import { InProcessSource, RemoteSource, StatusRegistry } from '../../src/agent/index.ts';
import { systemClock } from '../../src/core/index.ts';
import { applyTopology, parseTopology } from '../../src/topology/index.ts';
import { makeCloud, type TestCloud } from '../support/cloud.ts';
import { eventually } from '../support/net.ts';

const probe = { protocol: 'http', port: 8000, path: '/' };
const http = (extra: Record<string, unknown> = {}) => ({
  name: 'http',
  protocol: 'tcp',
  publicPort: 8080,
  localPort: 8000,
  ...extra,
});
const topology = {
  subscriptions: [
    {
      name: 'contoso',
      virtualNetworks: [
        {
          name: 'shop-net',
          addressSpace: ['10.16.0.0/16'],
          subnets: [
            { name: 'front', cidr: '10.16.1.0/24' },
            { name: 'back', cidr: '10.16.2.0/24' },
            { name: 'unused', cidr: '10.16.3.0/24' },
          ],
        },
        { name: 'empty-net', addressSpace: ['10.17.0.0/16'], subnets: [{ name: 'a', cidr: '10.17.1.0/24' }] },
      ],
      reservedIps: [{ name: 'shop-ip' }],
      cloudServices: [
        {
          name: 'shop',
          vnet: 'shop-net',
          reservedIp: 'shop-ip',
          vms: [
            { name: 'web1', subnet: 'front', workload: 'whoami', endpoints: [http({ lbSet: 'web', probe })] },
            {
              name: 'web2',
              subnet: 'front',
              workload: 'whoami',
              ilpip: true,
              endpoints: [
                http({
                  lbSet: 'web',
                  probe,
                  acl: [{ order: 1, action: 'permit', remoteSubnet: '198.18.0.0/15' }],
                }),
              ],
            },
            { name: 'web3', subnet: 'front', workload: 'whoami', endpoints: [http({ lbSet: 'web', probe })] },
            {
              name: 'dns1',
              subnet: 'back',
              staticDip: '10.16.2.10',
              workload: 'echo',
              endpoints: [{ name: 'dns', protocol: 'udp', publicPort: 53, localPort: 5353 }],
            },
          ],
        },
        {
          name: 'api',
          vnet: 'shop-net',
          vms: [{ name: 'api1', subnet: 'back', workload: 'whoami', ilpip: true, endpoints: [http()] }],
        },
      ],
    },
    {
      name: 'fabrikam',
      virtualNetworks: [
        // The same address plan as contoso's: the netns world tells them apart by VNet.
        {
          name: 'blog-net',
          addressSpace: ['10.16.0.0/16'],
          subnets: [{ name: 'web', cidr: '10.16.1.0/24' }],
        },
      ],
      cloudServices: [
        {
          name: 'blog',
          vnet: 'blog-net',
          vms: [
            {
              name: 'www1',
              subnet: 'web',
              workload: 'whoami',
              endpoints: [http({ lbSet: 'www', distribution: 'sourceIP' })],
            },
            {
              name: 'www2',
              subnet: 'web',
              staticDip: '10.16.1.200',
              workload: 'whoami',
              endpoints: [http({ lbSet: 'www', distribution: 'sourceIP' })],
            },
            { name: 'www3', subnet: 'web', workload: 'whoami', endpoints: [http({ lbSet: 'www' })] },
          ],
        },
      ],
    },
  ],
};

let tc: TestCloud;
let app: Api;
let url: string;
let token: string;
const registry = new StatusRegistry(systemClock);
const scopes: Record<string, AgentScope> = {
  'every host, with the load balancer': { hosts: null, lb: true },
  'one host, workloads only': { hosts: new Set(['rack1-host1']), lb: false },
};

before(async () => {
  tc = await makeCloud({ pools: ['198.18.0.0/24'], seed: 7 });
  await applyTopology(tc.cloud, parseTopology(topology), { operator: true });
  await tc.cloud.vmOperation({ service: 'blog', vm: 'www3' }, 'stop');
  await tc.cloud.vmOperation({ service: 'shop', vm: 'web3' }, 'deallocate');
  const tokens = new Tokens(tc.store);
  token = await tokens.create('op', null);
  app = await buildServer({ cloud: tc.cloud, tokens, registry });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  await app?.close();
  registry.close();
  await tc?.close();
});

function sources() {
  const local = new InProcessSource(tc.cloud, registry);
  const remote = new RemoteSource({ url, token, agent: 'test' });
  return { local, remote, close: () => Promise.all([local.close(), remote.close()]) };
}

test('the remote and the in-process sources give the same desired state, VNets and hosts included', async () => {
  const { local, remote, close } = sources();
  try {
    const [l, r] = await Promise.all([local.snapshot(), remote.snapshot()]);
    for (const [name, scope] of Object.entries(scopes)) {
      const want = desiredState(l, scope);
      assert.deepEqual(desiredState(r, scope), want, name);
      if (scope.lb) {
        // The cloud as the netns driver needs it: not a trivially equal empty state.
        assert.equal(want.vnets?.length, 2, JSON.stringify(want.vnets));
        assert.equal(want.vms?.length, 7, JSON.stringify(want.vms));
        assert.ok(want.endpoints.some((e) => e.kind === 'ilpip'));
        assert.ok(want.endpoints.some((e) => e.protocol === 'udp'));
        assert.ok(want.snat.length > 0);
      }
    }
    const hosts = new Set(l.vms.map((v) => v.host).filter((h) => h !== null));
    assert.ok(hosts.has('rack1-host1'), [...hosts].join(' '));
  } finally {
    await close();
  }
});

test('after changes to VNets and VMs, the remote source follows on the stream and lists VNets only when one changed', async () => {
  const { local, remote, close } = sources();
  let changes = 0;
  const unsubscribe = remote.subscribe(() => changes++);
  try {
    await eventually('the stream connects', () => remote.connections === 1, 10_000, 20);
    await remote.snapshot();
    const reads = remote.vnetReads;
    // A VM's change alone: no listing of VNets.
    await tc.cloud.vmOperation({ service: 'shop', vm: 'web3' }, 'start');
    await eventually('the change arrives', () => changes >= 2, 10_000, 20);
    const r1 = await remote.snapshot();
    assert.equal(remote.vnetReads, reads, 'a VM change lists no VNet');
    assert.deepEqual(
      desiredState(r1, scopes['every host, with the load balancer']!),
      desiredState(await local.snapshot(), { hosts: null, lb: true }),
    );

    // A new subnet, and a VM in it: the VNet is read again, and the VM gets the subnet's CIDR.
    await tc.cloud.addSubnet('fabrikam', 'blog-net', { name: 'extra', cidr: '10.16.9.0/24' });
    await tc.cloud.createVm('blog', { name: 'www4', subnet: 'extra', staticDip: '10.16.9.9' });
    await tc.cloud.vmOperation({ service: 'shop', vm: 'web1' }, 'deallocate');
    const scope = { hosts: null, lb: true };
    const want = desiredState(await local.snapshot(), scope);
    assert.ok(want.vms?.some((v) => v.vm === 'www4' && v.cidr === '10.16.9.0/24'));
    await eventually(
      'the remote source catches up',
      async () => {
        const got = desiredState(await remote.snapshot(), scope);
        assert.deepEqual(got, want);
        return true;
      },
      10_000,
      50,
    );
    assert.ok(remote.vnetReads > reads, 'the subnet event made it list VNets again');
  } finally {
    unsubscribe();
    await close();
  }
});

test('through any sequence of changes, the remote source’s snapshot kept per event gives the in-process desired state', async () => {
  const { local, remote, close } = sources();
  const unsubscribe = remote.subscribe(() => {});
  const scope = scopes['every host, with the load balancer']!;
  const cloud = tc.cloud;
  try {
    await eventually('the stream connects', () => remote.connections === 1, 10_000, 20);
    const steps: (() => Promise<unknown>)[] = [
      () => cloud.createVm('shop', { name: 'x1', subnet: 'front' }),
      () => cloud.createVm('api', { name: 'x2', subnet: 'back', ilpip: true }),
      () => cloud.createService('contoso', { name: 'extra', vnet: 'shop-net' }),
      () => cloud.createVm('extra', { name: 'e1', subnet: 'back', staticDip: '10.16.2.77' }),
      () => cloud.vmOperation({ service: 'shop', vm: 'x1' }, 'deallocate'),
      () => cloud.createReservedIp('contoso', 'ip2'),
      () => cloud.associateReservedIp('contoso', 'ip2', 'extra'),
      () => cloud.vmOperation({ service: 'api', vm: 'x2' }, 'redeploy'),
      () => cloud.maintenance({ rack: 'rack1' }),
      () => cloud.updateVm({ service: 'api', vm: 'x2' }, { ilpip: false }),
      () => cloud.disassociateReservedIp('contoso', 'ip2'),
      () => cloud.vmOperation({ service: 'shop', vm: 'x1' }, 'start'),
      () => cloud.vmOperation({ service: 'extra', vm: 'e1' }, 'delete'),
      () => cloud.deleteService('extra'),
      () => cloud.createImage('web', { command: 'exec true', env: { A: '1' } }),
      () => cloud.updateVm({ service: 'shop', vm: 'x1' }, { workload: 'web' }),
      () => cloud.updateImage('web', { command: 'exec false' }),
      () => cloud.addSubnet('contoso', 'shop-net', { name: 'more', cidr: '10.16.8.0/24' }),
      () => cloud.createVm('shop', { name: 'x3', subnet: 'more' }),
      () => cloud.vmOperation({ service: 'shop', vm: 'x3' }, 'delete'),
      () => cloud.deleteSubnet('contoso', 'shop-net', 'more'),
    ];
    const connections = remote.connections;
    for (const [i, step] of steps.entries()) {
      await step();
      const want = desiredState(await local.snapshot(), scope);
      await eventually(
        `after step ${i}`,
        async () => {
          assert.deepEqual(desiredState(await remote.snapshot(), scope), want);
          return true;
        },
        10_000,
        20,
      );
    }
    // Kept per event all along: no reconnect made it read everything again.
    assert.equal(remote.connections, connections);
  } finally {
    unsubscribe();
    await close();
  }
});

/** Resources the remote source receives for one snapshot after one VM is deallocated, in a cloud of `vms` VMs. */
async function readsPerChange(vms: number): Promise<number> {
  const t = await makeCloud({ pools: ['198.18.0.0/24'] });
  const tokens = new Tokens(t.store);
  const server = await buildServer({ cloud: t.cloud, tokens, registry });
  const remote = new RemoteSource({
    url: await server.listen({ host: '127.0.0.1', port: 0 }),
    token: await tokens.create('op', null),
    agent: 'cost',
  });
  let changes = 0;
  const unsubscribe = remote.subscribe(() => changes++);
  try {
    await applyTopology(
      t.cloud,
      parseTopology({
        subscriptions: [
          {
            name: 's',
            virtualNetworks: [
              { name: 'n', addressSpace: ['10.0.0.0/16'], subnets: [{ name: 'a', cidr: '10.0.0.0/22' }] },
            ],
            cloudServices: Array.from({ length: vms / 4 }, (_, s) => ({
              name: `s${s}`,
              vnet: 'n',
              vms: Array.from({ length: 4 }, (_, v) => ({
                name: `v${v}`,
                subnet: 'a',
                endpoints: [http({ lbSet: 'web' })],
              })),
            })),
          },
        ],
      }),
      { operator: true },
    );
    await eventually('the stream connects', () => remote.connections === 1, 10_000, 20);
    // The apply's events arrive, then a full read (after the connect) settles the snapshot.
    await eventually(
      'the snapshot holds every VM',
      async () =>
        (await remote.snapshot()).vms.length === vms && (await remote.snapshot()).vms.length === vms,
      10_000,
      20,
    );
    const seen = changes;
    await t.cloud.vmOperation({ service: 's0', vm: 'v0' }, 'deallocate');
    await eventually('the change arrives', () => changes > seen, 10_000, 20);
    const before = remote.resourcesRead;
    const snap = await remote.snapshot();
    assert.equal(snap.vms.find((v) => v.service === 's0' && v.name === 'v0')?.state, 'deallocated');
    return remote.resourcesRead - before;
  } finally {
    unsubscribe();
    await remote.close();
    await server.close();
    await t.close();
  }
}

test('a remote snapshot after one change reads as few resources at 200 VMs as at 16', async () => {
  const small = await readsPerChange(16);
  const large = await readsPerChange(200);
  assert.ok(small > 0, 'the changed VM is read again');
  assert.equal(large, small);
});
