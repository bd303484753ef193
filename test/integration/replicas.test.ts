/**
 * Several control-plane replicas over one PostgreSQL, under load: three real `vipdip serve`
 * processes on one database, 16 concurrent clients spread over them doing random VM lifecycle
 * operations on small subnets and a small public pool, so that allocation races and exhaustion
 * really happen (counted and printed). Afterwards: fsck is clean, no address was ever bound twice
 * (replayed from the event log), every acknowledged operation is in the log exactly once and
 * visible from every replica, and every replica's event stream delivered the same sequence.
 *
 * Then the same under failures: one replica killed with SIGKILL in the middle of the load (the
 * others keep serving, its in-flight operations are all or nothing, and it catches up when
 * restarted), and PostgreSQL stopped and started again mid-load (clear 503s during the outage,
 * full service afterwards, nothing acknowledged lost, no gap in any event stream).
 *
 * Everything runs on loopback: the replicas on free ports, PostgreSQL on its own free port.
 */
import assert from 'node:assert/strict';
import { after, describe, test, type TestContext } from 'node:test';
import { SeededRandom } from '../../src/core/index.ts';
import { formatFinding, fsck, toEventView, type EventView } from '../../src/lifecycle/index.ts';
import { PostgresStore } from '../../src/store/index.ts';
import { usePostgres, type PgCluster } from '../support/postgres.ts';
import { startServer, type TestServer } from '../support/server.ts';

const postgres = usePostgres();
const SEED = Number(process.env.VIPDIP_TEST_SEED ?? 20261202);
const REPLICAS = 3;
const CLIENTS = 16;
/** A request still unanswered after this is a failure of the test (nothing may hang). */
const REQUEST_TIMEOUT_MS = 30_000;
/** How long the replicas' event streams may take to deliver the last event once the load ends. */
const CATCH_UP_MS = 60_000;

const live = new Set<TestServer>();
after(async () => {
  for (const s of live) await s.stop();
});

// ------------------------------------------------------------------ the cloud under load

const SUBNETS = [
  { name: 's0', cidr: '127.16.0.0/29' }, // three usable addresses
  { name: 's1', cidr: '127.16.0.8/29' },
  { name: 's2', cidr: '127.16.0.16/28' }, // eleven
  { name: 's3', cidr: '127.16.0.32/28' },
];
/** Fourteen public addresses for six VIPs and nine ILPIPs: the public pool runs out too. */
const PUBLIC_POOL = '127.101.0.0/28';
const SERVICES = ['svc0', 'svc1', 'svc2', 'svc3', 'svc4', 'svc5'];
const VMS_PER_CLIENT = 2;
const SHARED_VMS = 4;

interface VmSpec {
  name: string;
  service: string;
  subnet: string;
  ilpip: boolean;
  /** The client that alone operates it, or null for the VMs every client races on. */
  owner: number | null;
}

function vmSpecs(): VmSpec[] {
  const out: VmSpec[] = [];
  const names: [string, number | null][] = [];
  for (let c = 0; c < CLIENTS; c++) for (let j = 0; j < VMS_PER_CLIENT; j++) names.push([`c${c}v${j}`, c]);
  for (let x = 0; x < SHARED_VMS; x++) names.push([`x${x}`, null]);
  names.forEach(([name, owner], i) => {
    out.push({
      name,
      owner,
      service: SERVICES[i % SERVICES.length]!,
      // The /29s get as many VMs as the /28s: three addresses for nine VMs.
      subnet: SUBNETS[Math.floor(i / 3) % SUBNETS.length]!.name,
      ilpip: i % 4 === 3,
    });
  });
  return out;
}

const TOPOLOGY = `
subscriptions:
  - name: load
    virtualNetworks:
      - name: net
        addressSpace: [127.16.0.0/16]
        subnets:
${SUBNETS.map((s) => `          - { name: ${s.name}, cidr: ${s.cidr} }`).join('\n')}
    cloudServices:
${SERVICES.map((s) => `      - { name: ${s}, vnet: net }`).join('\n')}
`;

// ------------------------------------------------------------------ HTTP and SSE

interface Reply {
  status: number;
  type: string;
  body: unknown;
}

async function request(
  url: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Reply> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    headers['content-type'] = typeof body === 'string' ? 'application/yaml' : 'application/json';
  }
  const res = await fetch(url + path, {
    method,
    headers,
    ...(payload !== undefined ? { body: payload } : {}),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    body: text === '' ? undefined : (JSON.parse(text) as unknown),
  };
}

async function must(server: TestServer, token: string, method: string, path: string, body?: unknown) {
  const r = await request(server.url, token, method, path, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** A replica's Server-Sent Events stream from the first event, collected as it arrives. */
class EventStream {
  readonly events: EventView[] = [];
  private readonly abort = new AbortController();
  private ended = false;
  readonly done: Promise<void>;

  constructor(server: TestServer, token: string) {
    this.done = (async () => {
      try {
        const res = await fetch(`${server.url}/v1/events/stream?since=0`, {
          headers: { authorization: `Bearer ${token}` },
          signal: this.abort.signal,
        });
        assert.equal(res.status, 200);
        let buf = '';
        const decoder = new TextDecoder();
        for await (const chunk of res.body!) {
          buf += decoder.decode(chunk as Uint8Array, { stream: true });
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = frame
              .split('\n')
              .filter((l) => l.startsWith('data: '))
              .map((l) => l.slice(6))
              .join('\n');
            if (data !== '') this.events.push(JSON.parse(data) as EventView);
          }
        }
      } catch {
        // Aborted, or the replica died: what arrived is what it delivered.
      } finally {
        this.ended = true;
      }
    })();
  }

  get last(): number {
    return this.events.at(-1)?.seq ?? 0;
  }

  async waitFor(seq: number): Promise<void> {
    const deadline = Date.now() + CATCH_UP_MS;
    while (this.last < seq && !this.ended && Date.now() < deadline) await sleep(50);
    assert.ok(this.last >= seq, `the stream stopped at ${this.last}, before ${seq}`);
  }

  close(): void {
    this.abort.abort();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ the load

type Op = 'start' | 'stop' | 'deallocate' | 'restart' | 'redeploy' | 'delete' | 'create';
const OPS: readonly Op[] = [
  'start',
  'start',
  'start',
  'deallocate',
  'deallocate',
  'deallocate',
  'stop',
  'restart',
  'redeploy',
  'delete',
];

/** The lifecycle events one acknowledged operation appends for its VM. */
const EVENTS_OF: Record<Op, string[]> = {
  start: ['vm.started'],
  stop: ['vm.stopped'],
  deallocate: ['vm.deallocated'],
  restart: ['vm.restarted'],
  redeploy: ['vm.redeployed'],
  delete: ['vm.deleted'],
  create: ['vm.created'],
};
const LIFECYCLE = new Set(Object.values(EVENTS_OF).flat());

type Outcome = 'ack' | 'refused' | 'unknown';

interface Record_ {
  client: number;
  vm: string;
  op: Op;
  replica: number;
  outcome: Outcome;
  status: number;
  code?: string;
  body?: unknown;
}

interface Cluster {
  pg: PgCluster;
  url: string;
  database: string;
  token: string;
  replicas: (TestServer | undefined)[];
  streams: EventStream[];
  specs: VmSpec[];
}

interface LoadOptions {
  opsPerClient: number;
  seed: number;
  /** Called (once each) when this share of the operations is done. */
  at?: { fraction: number; run: () => Promise<void> }[];
}

interface LoadResult {
  records: Record_[];
  codes: Map<string, number>;
  seconds: number;
}

async function runLoad(c: Cluster, opts: LoadOptions): Promise<LoadResult> {
  const started = performance.now();
  const records: Record_[] = [];
  const codes = new Map<string, number>();
  const total = CLIENTS * opts.opsPerClient;
  const hooks = [...(opts.at ?? [])].sort((a, b) => a.fraction - b.fraction);
  let done = 0;
  const hooksRunning: Promise<void>[] = [];
  const byName = new Map(c.specs.map((s) => [s.name, s]));
  const exists = new Map(c.specs.map((s) => [s.name, true]));

  const client = async (id: number) => {
    const rnd = new SeededRandom(opts.seed * 31 + id);
    const mine = c.specs.filter((s) => s.owner === id).map((s) => s.name);
    const shared = c.specs.filter((s) => s.owner === null).map((s) => s.name);
    for (let k = 0; k < opts.opsPerClient; k++) {
      // Failures of the cluster run while the clients keep going.
      while (hooks.length > 0 && done >= hooks[0]!.fraction * total) {
        hooksRunning.push(hooks.shift()!.run());
      }
      const vm = rnd.int(5) === 0 ? shared[rnd.int(shared.length)]! : mine[rnd.int(mine.length)]!;
      const spec = byName.get(vm)!;
      let op: Op = OPS[rnd.int(OPS.length)]!;
      // Only the owner deletes and re-creates, so it alone knows whether the VM exists.
      if (spec.owner === null && op === 'delete') op = 'redeploy';
      if (spec.owner !== null && !exists.get(vm)) op = 'create';
      const up = c.replicas.map((r, i) => [r, i] as const).filter(([r]) => r !== undefined);
      const [server, replica] = up[rnd.int(up.length)]!;
      const rec: Record_ = { client: id, vm, op, replica, outcome: 'unknown', status: 0 };
      try {
        const r =
          op === 'create'
            ? await request(server!.url, c.token, 'POST', `/v1/services/${spec.service}/vms`, {
                name: vm,
                subnet: spec.subnet,
                ilpip: spec.ilpip,
              })
            : op === 'delete'
              ? await request(server!.url, c.token, 'DELETE', `/v1/services/${spec.service}/vms/${vm}`)
              : await request(server!.url, c.token, 'POST', `/v1/services/${spec.service}/vms/${vm}/${op}`);
        rec.status = r.status;
        if (r.status >= 200 && r.status < 300) {
          rec.outcome = 'ack';
          rec.body = r.body;
          if (op === 'delete') exists.set(vm, false);
          if (op === 'create') exists.set(vm, true);
        } else {
          const code = (r.body as { code?: string } | undefined)?.code ?? `HTTP ${r.status}`;
          rec.code = code;
          codes.set(code, (codes.get(code) ?? 0) + 1);
          if (r.status === 503 && code === 'OVERLOADED') {
            // Refused by admission control before anything ran: certainly not applied.
            assert.match(r.type, /^application\/problem\+json/);
            rec.outcome = 'refused';
          } else if (r.status === 503) {
            assert.equal(code, 'UNAVAILABLE');
            rec.body = r.body;
            assert.match(r.type, /^application\/problem\+json/);
            rec.outcome = 'unknown'; // the commit may have happened before the connection broke
          } else {
            assert.ok(
              r.status >= 400 && r.status < 500,
              `${op} ${vm}: ${r.status} ${JSON.stringify(r.body)}`,
            );
            rec.outcome = 'refused';
          }
        }
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        // The replica went away mid-request: the operation may or may not have committed.
        rec.code = 'CONNECTION';
        codes.set('CONNECTION', (codes.get('CONNECTION') ?? 0) + 1);
      }
      records.push(rec);
      done++;
      if (rec.outcome === 'unknown') {
        // Learn what happened before going on (the owner's model of its VM).
        await sleep(50);
        if (spec.owner !== null) exists.set(vm, await existsNow(c, spec));
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
  await Promise.all(hooksRunning);
  for (const h of hooks) await h.run();
  return { records, codes, seconds: (performance.now() - started) / 1000 };
}

/** Whether a VM exists, asked of any replica that answers (waiting out an outage). */
async function existsNow(c: Cluster, spec: VmSpec): Promise<boolean> {
  const deadline = Date.now() + CATCH_UP_MS;
  for (;;) {
    for (const r of c.replicas) {
      if (r === undefined) continue;
      try {
        const res = await request(r.url, c.token, 'GET', `/v1/services/${spec.service}/vms/${spec.name}`);
        if (res.status === 200) return true;
        if (res.status === 404) return false;
      } catch {
        // Try the next one.
      }
    }
    assert.ok(Date.now() < deadline, 'no replica answered for a minute');
    await sleep(200);
  }
}

// ------------------------------------------------------------------ set-up and checks

async function startReplica(url: string, i: number, seed: number): Promise<TestServer> {
  const s = await startServer({ command: 'serve', args: ['--store', url, '--seed', String(seed * 10 + i)] });
  live.add(s);
  return s;
}

async function stopReplica(s: TestServer | undefined): Promise<void> {
  if (s === undefined) return;
  await s.stop();
  live.delete(s);
}

async function setUp(name: string, seed: number): Promise<Cluster> {
  const pg = await postgres();
  const url = await pg.createDatabase(name);
  // Started together on an empty database: they migrate and create the default fabric once.
  const replicas = await Promise.all(Array.from({ length: REPLICAS }, (_, i) => startReplica(url, i, seed)));
  const token = replicas[0]!.operatorToken;
  const first = replicas[0]!;
  await must(first, token, 'POST', '/v1/pools', { cidr: PUBLIC_POOL });
  await must(first, token, 'DELETE', '/v1/pools/127.100.0.0/16');
  await must(first, token, 'POST', '/v1/apply', TOPOLOGY);
  const specs = vmSpecs();
  for (const [i, s] of specs.entries()) {
    // Created on every replica in turn, deallocated: the load starts them.
    await must(replicas[i % REPLICAS]!, token, 'POST', `/v1/services/${s.service}/vms`, {
      name: s.name,
      subnet: s.subnet,
      ilpip: s.ilpip,
      start: false,
    });
  }
  const streams = replicas.map((r) => new EventStream(r, token));
  return { pg, url, database: name, token, replicas, streams, specs };
}

async function tearDown(c: Cluster): Promise<void> {
  for (const s of c.streams) s.close();
  for (const r of c.replicas) await stopReplica(r);
}

async function scrape(r: TestServer): Promise<Map<string, number>> {
  const text = await (
    await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${r.operatorToken}` } })
  ).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^(vipdip_(?:store|address)_\w+_total) (\d+)$/gm))
    out.set(m[1]!, Number(m[2]));
  return out;
}

interface Verdict {
  events: EventView[];
}

/**
 * Every check that must hold after a load, with `unknown` operations (killed replica, outage)
 * allowed to have happened or not, each as a whole.
 */
async function verify(t: TestContext, c: Cluster, load: LoadResult): Promise<Verdict> {
  const store = await PostgresStore.open(c.url);
  let log: EventView[];
  try {
    const findings = await store.snapshot((r) => fsck(r));
    assert.deepEqual(findings.map(formatFinding), [], 'fsck is clean');
    const rows = await store.read((r) => r.events({ since: 0, limit: 1_000_000 }));
    log = rows.map(toEventView);
  } finally {
    await store.close();
  }
  assert.deepEqual(
    log.map((e) => e.seq),
    log.map((_, i) => i + 1),
    'the log is numbered 1…N',
  );

  // No address was ever held by two resources at once, replaying the log from the start.
  const subnetOf = new Map(c.specs.map((s) => [`vm/${s.service}/${s.name}`, s.subnet]));
  const holder = new Map<string, string>();
  const FIELDS: Record<string, [string, (res: string) => string]> = {
    'vm.dip': ['dip', (res) => `dip ${subnetOf.get(res) ?? '?'}`],
    'vm.ilpip': ['ilpip', () => 'public'],
    'service.vip': ['vip', () => 'public'],
  };
  let binds = 0;
  for (const e of log) {
    const f = FIELDS[e.type];
    if (f === undefined) continue;
    const [field, space] = f;
    const before = e.old?.[field] as string | null | undefined;
    const now = e.new?.[field] as string | null | undefined;
    if (before != null) {
      const k = `${space(e.resource)} ${before}`;
      assert.equal(
        holder.get(k),
        e.resource,
        `event ${e.seq}: ${e.resource} releases ${before}, held by ${holder.get(k)}`,
      );
      holder.delete(k);
    }
    if (now != null) {
      const k = `${space(e.resource)} ${now}`;
      assert.equal(
        holder.get(k),
        undefined,
        `event ${e.seq}: ${e.resource} binds ${now}, held by ${holder.get(k)}`,
      );
      holder.set(k, e.resource);
      binds++;
    }
  }

  // Every acknowledged operation is in the log exactly once; an unknown one at most once.
  const perVm = new Map<string, string[]>();
  for (const e of log) {
    if (!LIFECYCLE.has(e.type) || e.subscription !== 'load') continue;
    const list = perVm.get(e.resource) ?? [];
    list.push(e.type);
    perVm.set(e.resource, list);
  }
  for (const spec of c.specs) {
    const res = `vm/${spec.service}/${spec.name}`;
    const mine = load.records.filter((r) => r.vm === spec.name);
    const acked = mine.filter((r) => r.outcome === 'ack').flatMap((r) => EVENTS_OF[r.op]);
    const unknown = mine.filter((r) => r.outcome === 'unknown');
    const got = perVm.get(res) ?? [];
    // The set-up created each VM once; the load's creates start the VM too.
    const createdAtSetUp = 1;
    const count = (xs: string[], ty: string) => xs.filter((x) => x === ty).length;
    for (const ty of LIFECYCLE) {
      let want = count(acked, ty) + (ty === 'vm.created' ? createdAtSetUp : 0);
      if (ty === 'vm.started') want += mine.filter((r) => r.outcome === 'ack' && r.op === 'create').length;
      const slack = unknown.filter(
        (r) => EVENTS_OF[r.op].includes(ty) || (ty === 'vm.started' && r.op === 'create'),
      ).length;
      const n = count(got, ty);
      assert.ok(
        n >= want && n <= want + slack,
        `${res}: ${n} ${ty} events in the log for ${want} acknowledged (+${slack} unknown)`,
      );
    }
  }

  // Every replica serves the same VMs, and each owned VM is as its last acknowledged operation
  // left it (unless an operation of unknown outcome came after it).
  const views: Map<string, unknown>[] = [];
  for (const r of c.replicas) {
    if (r === undefined) continue;
    const vms = (await must(r, c.token, 'GET', '/v1/vms')) as { service: string; name: string }[];
    views.push(new Map(vms.map((v) => [`${v.service}/${v.name}`, v])));
  }
  for (const v of views.slice(1)) assert.deepEqual(v, views[0], 'every replica serves the same VMs');
  for (const spec of c.specs.filter((s) => s.owner !== null)) {
    const mine = load.records.filter((r) => r.vm === spec.name);
    const lastAck = mine
      .map((r, i) => [r, i] as const)
      .filter(([r]) => r.outcome === 'ack')
      .at(-1);
    if (lastAck === undefined || mine.slice(lastAck[1] + 1).some((r) => r.outcome === 'unknown')) continue;
    const [rec] = lastAck;
    const shown = views[0]!.get(`${spec.service}/${spec.name}`);
    if (rec.op === 'delete') assert.equal(shown, undefined, `${spec.name} was deleted`);
    else {
      const want = rec.body as Record<string, unknown>;
      const got = shown as Record<string, unknown> | undefined;
      assert.ok(got !== undefined, `${spec.name} exists`);
      for (const k of ['state', 'dip', 'ilpip', 'host'])
        assert.deepEqual(got[k], want[k], `${spec.name}.${k}`);
    }
  }

  // Every replica's stream delivered the whole log, in order, once.
  const last = log.at(-1)!.seq;
  for (const [i, s] of c.streams.entries()) {
    await s.waitFor(last);
    assert.deepEqual(s.events, log, `replica ${i}'s event stream is the log`);
  }

  const metrics = new Map<string, number>();
  for (const r of c.replicas) {
    if (r === undefined) continue;
    for (const [k, v] of await scrape(r)) metrics.set(k, (metrics.get(k) ?? 0) + v);
  }
  const outcomes = { ack: 0, refused: 0, unknown: 0 };
  for (const r of load.records) outcomes[r.outcome]++;
  const line =
    `${load.records.length} operations in ${load.seconds.toFixed(1)} s: ${outcomes.ack} acknowledged, ${outcomes.refused} refused, ${outcomes.unknown} unknown; ` +
    `codes ${JSON.stringify(Object.fromEntries(load.codes))}; ${log.length} events, ${binds} address binds; ` +
    `store: ${metrics.get('vipdip_store_statements_total')} statements, ${metrics.get('vipdip_store_retries_total')} transactions retried; ` +
    `indexes: ${metrics.get('vipdip_address_refusals_total')} draws refused by the database, ${metrics.get('vipdip_address_reloads_total')} ranges reloaded`;
  t.diagnostic(line);
  console.log(`# ${t.name}: ${line}`);
  return { events: log };
}

// ------------------------------------------------------------------ the tests

describe('three replicas over one PostgreSQL', { timeout: 15 * 60_000 }, () => {
  test('16 clients, 5,120 random lifecycle operations: no address bound twice, nothing lost, one event sequence', async (t) => {
    const c = await setUp('load', SEED);
    try {
      const load = await runLoad(c, { opsPerClient: 320, seed: SEED });
      assert.ok(load.records.length >= 5000);
      assert.ok((load.codes.get('POOL_EXHAUSTED') ?? 0) > 0, 'pools ran out during the load');
      assert.equal(
        load.records.filter((r) => r.outcome === 'unknown').length,
        0,
        'nothing failed without a cause',
      );
      await verify(t, c, load);
      // Races happened: some replica drew an address another had just bound, and the database said no.
      let refusals = 0;
      for (const r of c.replicas) refusals += (await scrape(r!)).get('vipdip_address_refusals_total') ?? 0;
      assert.ok(refusals > 0, 'no allocation race happened');
    } finally {
      await tearDown(c);
    }
  });

  test('a replica killed with SIGKILL mid-load: the others serve on, nothing is half-applied, it catches up on restart', async (t) => {
    const c = await setUp('kill', SEED + 1);
    try {
      const victim = 2;
      const load = await runLoad(c, {
        opsPerClient: 60,
        seed: SEED + 1,
        at: [
          {
            fraction: 0.3,
            run: async () => {
              const r = c.replicas[victim]!;
              r.proc.kill('SIGKILL');
              await new Promise((res) =>
                r.proc.exitCode !== null || r.proc.signalCode !== null ? res(null) : r.proc.once('exit', res),
              );
              live.delete(r);
              c.replicas[victim] = undefined;
            },
          },
          {
            fraction: 0.7,
            run: async () => {
              const r = await startReplica(c.url, victim, SEED + 1);
              c.replicas[victim] = r;
              c.streams[victim]!.close();
              c.streams[victim] = new EventStream(r, c.token);
            },
          },
        ],
      });
      const afterKill = load.records.filter((r) => r.replica !== victim && r.outcome === 'ack').length;
      assert.ok(afterKill > 0, 'the other replicas kept serving');
      await verify(t, c, load);
    } finally {
      await tearDown(c);
    }
  });

  test('PostgreSQL stopped and started again mid-load: 503s during the outage, full service after, nothing lost', async (t) => {
    const c = await setUp('outage', SEED + 2);
    let restartedAt = 0;
    try {
      const load = await runLoad(c, {
        opsPerClient: 60,
        seed: SEED + 2,
        at: [
          {
            fraction: 0.25,
            run: async () => {
              c.pg.stopServer();
              await sleep(1500);
              c.pg.startServer();
              restartedAt = Date.now();
            },
          },
        ],
      });
      assert.ok((load.codes.get('UNAVAILABLE') ?? 0) > 0, 'the outage was answered with 503 UNAVAILABLE');
      assert.ok(restartedAt > 0);
      // Service resumed by itself: the last operations of every client were served normally.
      for (let id = 0; id < CLIENTS; id++) {
        const tail = load.records.filter((r) => r.client === id).slice(-10);
        assert.ok(
          tail.every((r) => r.outcome !== 'unknown'),
          `client ${id} still failing after the restart`,
        );
      }
      await verify(t, c, load);
    } finally {
      await tearDown(c);
    }
  });
});
