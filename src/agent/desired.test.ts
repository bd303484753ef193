import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Endpoint, ImageView, ServiceView, VmView, VnetView } from '../lifecycle/index.ts';
import { desiredState, envName, resolveWorkload, workloadCommand, type ControlSnapshot } from './desired.ts';

const ep = (over: Partial<Endpoint> = {}): Endpoint => ({
  name: 'http',
  protocol: 'tcp',
  publicPort: 8080,
  localPort: 8000,
  distribution: 'fiveTuple',
  idleTimeoutMinutes: 4,
  acl: [],
  proxyProtocol: false,
  ...over,
});

const svc = (name: string, vip: string | null, subscription = 'contoso'): ServiceView => ({
  subscription,
  name,
  vip,
  reservedIp: null,
  dnsName: `${name}.cloudapp.vipdip.test`,
  vnet: 'net',
  vms: [],
});

const vm = (service: string, name: string, over: Partial<VmView> = {}): VmView => ({
  subscription: 'contoso',
  service,
  name,
  state: 'running',
  dip: null,
  host: 'rack1-host1',
  rack: 'rack1',
  subnet: 'front',
  vnet: 'net',
  staticDip: null,
  ilpip: null,
  ilpipEnabled: false,
  workload: null,
  endpoints: [],
  fqdns: { internal: `${name}.${service}.internal.vipdip.test`, public: null },
  ...over,
});

const all = { hosts: null, lb: true };

describe('the desired state of the data plane', () => {
  const probe = { protocol: 'http' as const, port: 8000, path: '/', intervalSeconds: 5, timeoutSeconds: 11 };
  const snap: ControlSnapshot = {
    services: [svc('shop', '127.100.0.5'), svc('api', '127.100.0.6')],
    vms: [
      vm('shop', 'web2', {
        dip: '127.16.1.12',
        endpoints: [ep({ lbSet: 'web', probe })],
        workload: 'whoami',
      }),
      vm('shop', 'web1', {
        dip: '127.16.1.11',
        endpoints: [ep({ lbSet: 'web', probe })],
        workload: 'whoami',
      }),
      vm('shop', 'web3', {
        dip: null,
        state: 'deallocated',
        host: null,
        endpoints: [ep({ lbSet: 'web', probe })],
      }),
      vm('shop', 'db', {
        dip: '127.16.2.10',
        state: 'stopped',
        endpoints: [ep({ name: 'sql', publicPort: 1433, localPort: 1433 })],
      }),
      vm('api', 'api1', {
        dip: '127.16.2.20',
        ilpip: '127.100.0.77',
        endpoints: [ep({ protocol: 'udp', name: 'dns', publicPort: 53, localPort: 5353 })],
      }),
    ],
  };
  const d = desiredState(snap, all);

  test('members of a load-balanced set share one listener on the VIP; only running VMs are backends', () => {
    const web = d.endpoints.find((e) => e.key === 'tcp/127.100.0.5:8080')!;
    assert.equal(web.lbSet, 'web');
    assert.deepEqual(
      web.backends.map((b) => [b.vm, b.dip, b.port, b.probe]),
      [
        ['web1', '127.16.1.11', 8000, 'shop/web1/http'],
        ['web2', '127.16.1.12', 8000, 'shop/web2/http'],
      ],
    );
    assert.equal(web.idleMs, 4 * 60_000);
    assert.equal(web.backends[0]!.id, 'contoso/shop/web1');
  });

  test('an endpoint of a stopped VM keeps its listener, with no backend, so clients are refused', () => {
    const sql = d.endpoints.find((e) => e.key === 'tcp/127.100.0.5:1433')!;
    assert.deepEqual(sql.backends, []);
  });

  test('an ILPIP leads its ports straight to the same ports of the DIP', () => {
    const ilpip = d.endpoints.find((e) => e.key === 'udp/127.100.0.77:5353')!;
    assert.equal(ilpip.kind, 'ilpip');
    assert.deepEqual(
      ilpip.backends.map((b) => `${b.dip}:${b.port}`),
      ['127.16.2.20:5353'],
    );
    assert.ok(d.endpoints.some((e) => e.key === 'udp/127.100.0.6:53' && e.kind === 'vip'));
  });

  test('probes are asked for the running members only, at their DIP, in milliseconds', () => {
    assert.deepEqual([...d.probes.keys()].sort(), ['shop/web1/http', 'shop/web2/http']);
    assert.deepEqual(d.probes.get('shop/web1/http'), {
      protocol: 'http',
      network: 'contoso',
      address: '127.16.1.11',
      port: 8000,
      path: '/',
      intervalMs: 5000,
      timeoutMs: 11_000,
    });
  });

  test('a TCP endpoint without a probe gets an implicit TCP check of DIP:localPort; a UDP one gets none', () => {
    const s = desiredState(
      {
        services: [svc('api', '127.100.0.6')],
        vms: [
          vm('api', 'api1', {
            dip: '127.16.3.11',
            endpoints: [
              ep({ name: 'web' }),
              ep({ name: 'dns', protocol: 'udp', publicPort: 53, localPort: 53 }),
            ],
          }),
        ],
      },
      all,
    );
    assert.deepEqual(s.probes.get('api/api1/web'), {
      protocol: 'tcp',
      network: 'contoso',
      address: '127.16.3.11',
      port: 8000,
      intervalMs: 15_000,
      timeoutMs: 31_000,
    });
    assert.equal(s.probes.has('api/api1/dns'), false);
    assert.deepEqual(
      s.backends.map((b) => [b.endpoint, b.check, b.probed]),
      [
        ['web', 'implicit', true],
        ['dns', 'none', false],
      ],
    );
    const tcp = s.endpoints.find((e) => e.protocol === 'tcp')!;
    assert.equal(tcp.backends[0]!.probe, 'api/api1/web', 'in rotation only once the check passes');
  });

  test("every allocated DIP leaves from its ILPIP, else its service's VIP (R6)", () => {
    const snat = new Map(d.snat.map((s) => [s.dip, s.source]));
    assert.equal(snat.get('127.16.1.11'), '127.100.0.5');
    assert.equal(snat.get('127.16.2.10'), '127.100.0.5', 'a stopped VM keeps its DIP and its NAT');
    assert.equal(snat.get('127.16.2.20'), '127.100.0.77');
    assert.equal(snat.size, 4);
  });

  test('a DIP held in two VNets (overlapping, in two subscriptions) gets the NAT of each subscription', () => {
    const twice = desiredState(
      {
        services: [svc('a', '127.100.0.1'), svc('b', '127.100.0.2', 'other')],
        vms: [
          vm('a', 'x', { dip: '127.16.1.5' }),
          vm('b', 'y', { dip: '127.16.1.5', subscription: 'other' }),
        ],
      },
      all,
    );
    const sub = (name: string) => twice.snat.filter((x) => x.subscription === name);
    assert.equal(twice.snat.length, 2);
    assert.deepEqual(
      sub('other').map((x) => [x.dip, x.source]),
      [['127.16.1.5', '127.100.0.2']],
    );
    assert.deepEqual(
      twice.snat.filter((x) => x.subscription !== 'other').map((x) => [x.dip, x.source]),
      [['127.16.1.5', '127.100.0.1']],
    );
  });

  test('a service without a VIP has no listener', () => {
    const none = desiredState(
      { services: [svc('a', null)], vms: [vm('a', 'x', { endpoints: [ep()] })] },
      all,
    );
    assert.deepEqual(none.endpoints, []);
  });

  test('workloads run for running VMs, with their identity, addresses and ports in the environment', () => {
    assert.deepEqual(
      d.workloads.map((w) => w.key),
      ['shop/web1', 'shop/web2'],
    );
    const w = d.workloads[0]!;
    assert.deepEqual(
      {
        vm: w.env.VIPDIP_VM,
        service: w.env.VIPDIP_SERVICE,
        dip: w.env.VIPDIP_DIP,
        vip: w.env.VIPDIP_VIP,
        port: w.env.VIPDIP_PORT_HTTP,
        host: w.env.VIPDIP_HOST,
      },
      {
        vm: 'web1',
        service: 'shop',
        dip: '127.16.1.11',
        vip: '127.100.0.5',
        port: '8000',
        host: 'rack1-host1',
      },
    );
    assert.deepEqual([...d.knownWorkloads].sort(), ['shop/web1', 'shop/web2']);
  });

  test("a new DIP changes the workload's fingerprint (so it restarts); nothing else does", () => {
    const again = desiredState(snap, all).workloads[0]!;
    assert.equal(again.fingerprint, d.workloads[0]!.fingerprint);
    const moved = desiredState(
      { ...snap, vms: snap.vms.map((v) => (v.name === 'web1' ? { ...v, dip: '127.16.1.99' } : v)) },
      all,
    ).workloads.find((w) => w.vm === 'web1')!;
    assert.notEqual(moved.fingerprint, d.workloads[0]!.fingerprint);
  });

  test('an agent scoped to some hosts runs only their workloads, and no listener without the lb role', () => {
    const s = desiredState(
      {
        services: snap.services,
        vms: [
          vm('shop', 'a', { dip: '127.16.1.1', host: 'h1', workload: 'echo' }),
          vm('shop', 'b', { dip: '127.16.1.2', host: 'h2', workload: 'echo' }),
          vm('shop', 'c', { dip: null, host: null, state: 'deallocated', workload: 'echo' }),
        ],
      },
      { hosts: new Set(['h1']), lb: false },
    );
    assert.deepEqual(
      s.workloads.map((w) => w.vm),
      ['a'],
    );
    assert.deepEqual([...s.knownWorkloads].sort(), ['shop/a', 'shop/c']);
    assert.deepEqual(s.endpoints, []);
    assert.equal(s.probes.size, 0);
  });

  test('endpoint names become environment variable names', () => {
    assert.equal(envName('http'), 'HTTP');
    assert.equal(envName('my-api_2'), 'MY_API_2');
  });

  test('built-ins run through the vipdip command, anything else through the shell', () => {
    const none = new Map<string, ImageView>();
    assert.deepEqual(workloadCommand(resolveWorkload('whoami', none)!, '/x/bin/vipdip.js').args, [
      '/x/bin/vipdip.js',
      'workload',
      'whoami',
    ]);
    assert.deepEqual(workloadCommand(resolveWorkload('command: python3 -m http.server', none)!, '/x'), {
      command: '/bin/sh',
      args: ['-c', 'python3 -m http.server'],
    });
  });

  test('a registered image runs its command with its environment; an unknown one or a bare command line runs nothing', () => {
    const web: ImageView = {
      name: 'web',
      builtin: false,
      command: 'python3 -m http.server "$PORT"',
      env: { PORT: '8080' },
      createdAt: '2026-12-04T00:00:00.000Z',
    };
    const images = new Map([['web', web]]);
    assert.deepEqual(resolveWorkload('web', images), {
      kind: 'shell',
      command: 'python3 -m http.server "$PORT"',
      env: { PORT: '8080' },
    });
    assert.equal(resolveWorkload('nginx', images), undefined);
    // Before images a bare command line ran through the shell; now it is neither an image nor a command.
    assert.equal(resolveWorkload('sh -c id', images), undefined);
  });
});

describe('the hosts of the desired state', () => {
  const vnet = (subscription: string, name: string, subnets: [string, string][]): VnetView => ({
    subscription,
    name,
    addressSpace: ['10.0.0.0/8'],
    dipPolicy: 'random',
    movePolicy: 'keep',
    subnets: subnets.map(([n, cidr]) => ({ name: n, cidr, usable: 250, bound: 0, free: 250 })),
  });

  test('every VM holding a DIP is listed with its subnet CIDR, and only the subnets in use per VNet', () => {
    const d = desiredState(
      {
        services: [svc('shop', '198.18.0.5'), svc('blog', '198.18.0.6', 'fabrikam')],
        vms: [
          vm('shop', 'web1', { dip: '10.1.0.4' }),
          vm('shop', 'web2', { dip: '10.1.1.4', subnet: 'back' }),
          vm('shop', 'stopped', { state: 'deallocated', dip: null }),
          vm('blog', 'b1', { subscription: 'fabrikam', dip: '10.1.0.4' }),
        ],
        vnets: [
          vnet('contoso', 'net', [
            ['front', '10.1.0.0/24'],
            ['back', '10.1.1.0/24'],
            ['empty', '10.1.2.0/24'],
          ]),
          vnet('fabrikam', 'net', [['front', '10.1.0.0/24']]),
        ],
      },
      all,
    );
    assert.deepEqual(
      d.vms?.map((v) => `${v.key} ${v.vnet} ${v.cidr} ${v.dip}`),
      [
        'fabrikam/blog/b1 fabrikam/net 10.1.0.0/24 10.1.0.4',
        'contoso/shop/web1 contoso/net 10.1.0.0/24 10.1.0.4',
        'contoso/shop/web2 contoso/net 10.1.1.0/24 10.1.1.4',
      ],
    );
    assert.deepEqual(
      d.vnets?.map((v) => `${v.key} ${v.subnets.join(',')}`),
      ['contoso/net 10.1.0.0/24,10.1.1.0/24', 'fabrikam/net 10.1.0.0/24'],
    );
  });

  test('a snapshot without VNets gives no hosts, as listener-only drivers expect', () => {
    const d = desiredState({ services: [], vms: [vm('shop', 'web1', { dip: '127.16.1.11' })] }, all);
    assert.equal(d.vms, undefined);
    assert.equal(d.vnets, undefined);
  });
});
