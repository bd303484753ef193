/**
 * Network namespaces for root-only tests. Each test names its namespaces with a prefix of its own
 * (`vdt<pid>…`), creates them here and deletes them by name in `t.after`, so a failing test leaves
 * nothing behind and tests running in parallel never meet. Nothing here touches the root namespace:
 * no address, no route, no rule is ever added outside a namespace a test created.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

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
