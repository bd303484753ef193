/**
 * Network namespaces for root-only tests. Each test names its namespaces with a prefix of its own
 * (`vdt<pid>…`), creates them here and deletes them by name in `t.after`, so a failing test leaves
 * nothing behind and tests running in parallel never meet. Nothing here touches the root namespace:
 * no address, no route, no rule is ever added outside a namespace a test created.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import type {
  DesiredBackend,
  DesiredDataPlane,
  DesiredEndpoint,
  DesiredVm,
} from '../../src/dataplane/index.ts';

/** Why this machine cannot run the netns tests, or undefined when it can (Linux, root, ip and nft). */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces and nftables)';
  for (const tool of ['ip', 'nft']) {
    if (spawnSync(tool, ['-V'], { stdio: 'ignore' }).error) return `needs ${tool} (iproute2, nftables)`;
  }
  return undefined;
}

/**
 * Skips the test with its reason printed when this machine cannot run it; fails it instead when
 * VIPDIP_REQUIRE_NETNS is set (as .ci/run does, which runs as root), so CI never skips silently.
 */
export function requireNetns(t: TestContext): boolean {
  const why = netnsUnavailable();
  if (why === undefined) return true;
  if (process.env.VIPDIP_REQUIRE_NETNS) throw new Error(`netns test cannot run: ${why}`);
  t.skip(`netns test skipped: ${why}`);
  return false;
}

/** A prefix unique to this test process: `vdt` + pid in base 36. */
export function testPrefix(tag: string): string {
  return `vdt${process.pid.toString(36)}${tag}`;
}

/** Runs `ip` with arguments, throwing with its stderr on failure. */
export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Names of the namespaces that exist now. */
export function listNamespaces(): string[] {
  return ip('netns', 'list')
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

/** Creates namespace `name` with its loopback up, deleted by name when the test ends (pass or fail). */
export function makeNamespace(t: TestContext, name: string): string {
  t.after(() => {
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  });
  ip('netns', 'add', name);
  ip('-n', name, 'link', 'set', 'lo', 'up');
  return name;
}

/** Loads an nft ruleset text inside namespace `ns`. */
export function nftIn(ns: string, ruleset: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], {
    input: ruleset,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

// ---- a sample world for the driver tests ---------------------------------------------------------

export interface SampleVm {
  subscription: string;
  service: string;
  vm: string;
  dip: string;
}

/** Two subscriptions: s1 with `web` (VIP .10, two VMs) and `app` (VIP .11, the R6 caller); s2 with `blog`. */
export const SAMPLE_VMS: SampleVm[] = [
  { subscription: 's1', service: 'web', vm: 'web1', dip: '10.1.0.4' },
  { subscription: 's1', service: 'web', vm: 'web2', dip: '10.1.0.5' },
  { subscription: 's1', service: 'app', vm: 'app1', dip: '10.1.0.6' },
  { subscription: 's2', service: 'blog', vm: 'blog1', dip: '10.2.0.4' },
];
export const SAMPLE_VIPS: Record<string, string> = {
  web: '198.18.0.10',
  app: '198.18.0.11',
  blog: '198.18.0.20',
};
const CIDRS: Record<string, string> = { s1: '10.1.0.0/24', s2: '10.2.0.0/24' };
export const BACKEND_PORT = 8000;
export const VIP_PORT = 80;

/**
 * The sample's desired state; `healthy(vm)` decides each backend's health (all healthy by default).
 * `vips` by service and `cidrs` (each subscription's one VNet) default to the sample's.
 */
export function sampleDesired(
  vms: SampleVm[] = SAMPLE_VMS,
  healthy: (vm: string) => boolean = () => true,
  vips: Record<string, string> = SAMPLE_VIPS,
  cidrs: Record<string, string> = CIDRS,
): DesiredDataPlane {
  const endpoints: DesiredEndpoint[] = [];
  for (const service of new Set(vms.map((v) => v.service))) {
    const members = vms.filter((v) => v.service === service);
    const backends: DesiredBackend[] = members.map((v) => ({
      id: `${v.subscription}/${v.service}/${v.vm}`,
      vm: v.vm,
      dip: v.dip,
      port: BACKEND_PORT,
      healthy: healthy(v.vm),
    }));
    endpoints.push({
      key: `tcp/${vips[service]}:${VIP_PORT}`,
      kind: 'vip',
      subscription: members[0]!.subscription,
      service,
      name: 'http',
      lbSet: null,
      address: vips[service]!,
      protocol: 'tcp',
      port: VIP_PORT,
      distribution: 'fiveTuple',
      idleMs: 240_000,
      acl: [],
      proxyProtocol: false,
      backends,
    });
  }
  const dvms: DesiredVm[] = vms.map((v) => ({
    key: `${v.subscription}/${v.service}/${v.vm}`,
    subscription: v.subscription,
    service: v.service,
    vm: v.vm,
    vnet: `${v.subscription}/net`,
    cidr: cidrs[v.subscription]!,
    dip: v.dip,
  }));
  const subs = [...new Set(vms.map((v) => v.subscription))];
  return {
    endpoints,
    snat: vms.map((v) => ({ subscription: v.subscription, dip: v.dip, source: vips[v.service]! })),
    vms: dvms,
    vnets: subs.map((s) => ({ key: `${s}/net`, subscription: s, name: 'net', subnets: [cidrs[s]!] })),
  };
}

/** Runs test/fixtures/netns-client.mjs in namespace `ns` with the given request lines; its answers. */
export function clientIn(ns: string, lines: string[]): string[] {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, 'test/fixtures/netns-client.mjs'], {
    input: lines.join('\n') + '\n',
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`client in ${ns} failed: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}
