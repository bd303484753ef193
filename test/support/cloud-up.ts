/**
 * A running `vipdip up` with the local driver and a topology applied, for data-plane tests: real
 * listeners, real probes, real workloads. Each test file passes its own public pool and VNet blocks
 * (see test/support/net.ts on address blocks) and a time scale, so probes every 5 s and idle
 * timeouts of 4 minutes pass in milliseconds.
 */
import { request, type Agent } from 'node:http';
import { call, startServer, type TestServer } from './server.ts';
import { eventually } from './net.ts';

export interface Whoami {
  vm: string;
  service: string;
  subscription: string;
  dip: string;
  vip: string;
  remoteAddress: string;
  remotePort: number;
  host: string;
}

export interface BackendHealth {
  vm: string;
  dip: string | null;
  localPort: number;
  state: 'up' | 'down' | 'unknown';
  since: string | null;
  detail: string | null;
}

export interface RunningCloud {
  srv: TestServer;
  api(method: string, path: string, body?: unknown, token?: string): ReturnType<typeof call>;
  /** Answers the body, failing the test on any other status than `status`. */
  ok<T>(method: string, path: string, body?: unknown, status?: number): Promise<T>;
  vip(service: string): Promise<string>;
  vm(service: string, name: string): Promise<{ dip: string | null; state: string; host: string | null }>;
  health(service: string): Promise<{ endpoints: { name: string; backends: BackendHealth[] }[] }>;
  logs(
    service: string,
    vm: string,
  ): Promise<{ status: string; pid: number | null; restarts: number; lines: { text: string }[] }>;
  /** Waits until every backend of `service` reads `up`. */
  allUp(service: string, count: number): Promise<void>;
}

export async function startCloud(opts: {
  pool: string;
  topology: unknown;
  timeScale: number;
  args?: string[];
}): Promise<RunningCloud> {
  const srv = await startServer({
    args: [
      '--driver',
      'local',
      '--time-scale',
      String(opts.timeScale),
      '--public-pool',
      opts.pool,
      ...(opts.args ?? []),
    ],
  });
  const api = (method: string, path: string, body?: unknown, token = srv.operatorToken) =>
    call(srv, token, method, path, body);
  const ok = async <T>(method: string, path: string, body?: unknown, status = 200): Promise<T> => {
    const r = await api(method, path, body);
    if (r.status !== status)
      throw new Error(`${method} ${path}: expected ${status}, got ${r.status}: ${r.text}`);
    return r.body as T;
  };
  try {
    await ok('POST', '/v1/apply', opts.topology);
  } catch (e) {
    await srv.stop();
    throw e;
  }
  const cloud: RunningCloud = {
    srv,
    api,
    ok,
    vip: async (service) => {
      const s = await ok<{ vip: string | null }>('GET', `/v1/services/${service}`);
      if (s.vip === null) throw new Error(`service ${service} has no VIP`);
      return s.vip;
    },
    vm: (service, name) => ok('GET', `/v1/services/${service}/vms/${name}`),
    health: (service) => ok('GET', `/v1/services/${service}/health`),
    logs: (service, vm) => ok('GET', `/v1/services/${service}/vms/${vm}/logs`),
    allUp: async (service, count) => {
      await eventually(
        `${count} backends of ${service} up`,
        async () => {
          const h = await cloud.health(service);
          const bs = h.endpoints.flatMap((e) => e.backends);
          return bs.length === count && bs.every((b) => b.state === 'up');
        },
        60_000,
        50,
      );
    },
  };
  return cloud;
}

/** One HTTP GET through the data plane: a new connection unless an agent keeps one alive. */
export function whoami(
  host: string,
  port: number,
  opts: { localAddress?: string; agent?: Agent; timeoutMs?: number } = {},
): Promise<Whoami> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path: '/',
        agent: opts.agent ?? false,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
        timeout: opts.timeoutMs ?? 10_000,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body) as Whoami);
          } catch {
            reject(new Error(`not JSON: ${body}`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** A whoami VM with an HTTP endpoint in a load-balanced set. */
export function webVm(
  name: string,
  subnet: string,
  extra: Record<string, unknown> = {},
  endpoint: Record<string, unknown> = {},
) {
  return {
    name,
    subnet,
    workload: 'whoami',
    endpoints: [
      { name: 'http', protocol: 'tcp', publicPort: 8080, localPort: 8000, lbSet: 'web', ...endpoint },
    ],
    ...extra,
  };
}
