/**
 * The load generator of the API benchmark, run as its own process so that its CPU is not the
 * server's. Every loop is bounded in time and count; all traffic goes to the loopback URL given.
 *
 *   node --import tsx bench/api-client.ts URL[,URL…] TOKEN closed WORKERS SECONDS VMS
 *   node --import tsx bench/api-client.ts URL[,URL…] TOKEN rate RPS SECONDS VMS
 *   … VMS PER_SERVICE: VM `vm<i>` lives in service `b<i / PER_SERVICE>` (the size axis), rather
 *   than every VM in service `bench`
 *
 * With several URLs (replicas of one cloud) the VMs are spread over them: VM i always goes to
 * URL i mod n, so one VM's operations stay in order on one replica.
 *
 * Each request is a lifecycle operation on one VM (deallocate when it is running, start when it is
 * deallocated). Prints one JSON line: { ops, errors, refused, acceptedPerSecond, seconds,
 * opsPerSecond, p50Ms, p99Ms, conflicts }. A request the server refuses (503 with Retry-After) is counted in
 * `refused`, not in `errors`, and the latencies are those of the accepted requests only.
 */
import { Agent, request } from 'node:http';

const [urlList, token, mode, param, secondsText, vmsText, perServiceText] = process.argv.slice(2);
const perService = Number(perServiceText ?? 0);
const serviceOf = (i: number) => (perService > 0 ? `b${Math.floor(i / perService)}` : 'bench');
const urls = (urlList ?? '').split(',');
if (!urls.every((u) => u.startsWith('http://127.')) || token === undefined || vmsText === undefined) {
  console.error('usage: api-client.ts http://127.x.y.z:PORT TOKEN closed|rate N SECONDS VMS');
  process.exit(2);
}
const seconds = Math.min(60, Number(secondsText));
const vms = Number(vmsText);
const MAX_REQUESTS = 1_000_000;
/** A request still unanswered after this counts as an error; it bounds the run when the server lags. */
const REQUEST_TIMEOUT_MS = 10_000;
const running = new Array<boolean>(vms).fill(true);
// A previous round left some VMs deallocated: start from what the server says.
{
  const res = await fetch(perService > 0 ? `${urls[0]}/v1/vms` : `${urls[0]}/v1/services/bench/vms`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (res.status !== 200) throw new Error(`GET vms: ${res.status} ${await res.text()}`);
  for (const v of (await res.json()) as { name: string; state: string }[]) {
    const i = Number(v.name.slice(2));
    if (Number.isInteger(i) && i < vms) running[i] = v.state !== 'deallocated';
  }
}
const latencies: number[] = [];
const lags: number[] = [];
let errors = 0;

let refused = 0;
/** Open loop: 409s of operations sent to a VM that already had one in flight (every VM had). */
let conflicts = 0;
/** Errors by HTTP status (a timeout or a broken connection is not among them). */
const errorStatuses: Record<number, number> = {};

/**
 * Keep-alive sockets, reused across requests. Node's http client rather than fetch: it costs the
 * generator about a third of fetch's CPU per request, and the generator shares the server's cores.
 */
const agent = new Agent({ keepAlive: true, maxSockets: 512 });

function post(url: string): Promise<{ status: number; retryAfter: boolean; body: string }> {
  return new Promise((ok, fail) => {
    const req = request(
      url,
      { method: 'POST', agent, headers: { authorization: `Bearer ${token}` }, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        // Only a conflict's body is read (it says the VM's state); the rest are drained unparsed.
        let body = '';
        if (res.statusCode === 409) {
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
        } else res.resume();
        res.on('end', () =>
          ok({ status: res.statusCode ?? 0, retryAfter: 'retry-after' in res.headers, body }),
        );
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', fail);
    req.end();
  });
}

/** Operations in flight per VM: the open loop sends the next one to a VM that has none. */
const inFlight = new Array<number>(vms).fill(0);

/**
 * One operation; false when the server refused it (503 with Retry-After: it did nothing) or when it
 * was a conflict of the generator's making (see freeVm): neither counts as accepted. The verb
 * follows what the generator last learnt of the VM, and the answer teaches it the VM's state: 200
 * (the verb applied), or a 409 whose detail names the state.
 */
async function op(i: number): Promise<boolean> {
  const verb = running[i] ? 'deallocate' : 'start';
  const raced = inFlight[i]! > 0;
  inFlight[i]!++;
  let res: { status: number; retryAfter: boolean; body: string };
  try {
    res = await post(`${urls[i % urls.length]}/v1/services/${serviceOf(i)}/vms/vm${i}/${verb}`);
  } finally {
    inFlight[i]!--;
  }
  if (res.status === 503 && res.retryAfter) {
    refused++;
    return false;
  }
  if (res.status === 200) running[i] = verb === 'start';
  else if (res.status === 409 && /it is (running|deallocated|stopped)/.test(res.body)) {
    running[i] = !/it is deallocated/.test(res.body);
    // Sent while the VM had another operation in flight (every VM had: see freeVm), which did the
    // same first: the server did right to refuse it.
    if (raced) {
      conflicts++;
      return false;
    }
  }
  if (res.status !== 200) {
    errors++;
    errorStatuses[res.status] = (errorStatuses[res.status] ?? 0) + 1;
  }
  return true;
}

/**
 * The VM for the open loop's request n: n mod VMs, or the next one with nothing in flight. Two
 * operations in flight on one VM would race (a start sent while its deallocate is still queued,
 * then refused) and answer 409: a conflict of the generator's making, not a server error. When
 * every VM is busy, n mod VMs all the same: a 409 it then gets is counted in `conflicts`, not in
 * `errors` (the server did right to refuse it).
 */
function freeVm(n: number): number {
  for (let k = 0; k < vms; k++) {
    const i = (n + k) % vms;
    if (inFlight[i] === 0) return i;
  }
  return n % vms;
}

function quantile(q: number, of: readonly number[] = latencies): number {
  const s = [...of].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

async function closed(workers: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let count = 0;
  const per = Math.floor(vms / workers);
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let k = 0; performance.now() < end && count < MAX_REQUESTS; k++) {
        const t0 = performance.now();
        if (await op(w * per + (k % per))) latencies.push(performance.now() - t0);
        count++;
      }
    }),
  );
  return count;
}

/** Open loop: requests start on schedule whatever the latency, which is measured from the schedule. */
async function rate(rps: number): Promise<number> {
  const total = Math.min(MAX_REQUESTS, Math.round(rps * seconds));
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let n = 0; n < total; n++) {
    const due = start + (n * 1000) / rps;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    // How late the generator itself sends: on a shared machine it is part of the latency measured.
    lags.push(performance.now() - due);
    inflight.push(
      op(freeVm(n)).then(
        (accepted) => void (accepted && latencies.push(performance.now() - due)),
        (e: unknown) => {
          // The first few say why (a refused connection, a timeout); the rest are only counted.
          if (++errors <= 3) console.error(e);
        },
      ),
    );
  }
  await Promise.all(inflight);
  return total;
}

const t0 = performance.now();
const count = mode === 'closed' ? await closed(Number(param)) : await rate(Number(param));
const elapsed = (performance.now() - t0) / 1000;
agent.destroy();
console.log(
  JSON.stringify({
    ops: count,
    errors,
    refused,
    conflicts,
    errorStatuses,
    acceptedPerSecond: (count - refused - conflicts) / elapsed,
    seconds: elapsed,
    opsPerSecond: count / elapsed,
    p50Ms: quantile(0.5),
    p99Ms: quantile(0.99),
    ...(lags.length > 0 ? { sendLagP99Ms: quantile(0.99, lags) } : {}),
  }),
);
