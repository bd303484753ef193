/**
 * The netns driver's helper inside the world, where the DIPs are routed (Node cannot enter a
 * namespace itself): the driver starts it once, under `ip netns exec WORLD`, and talks to it over
 * its stdin and stdout, one JSON line per message each way. It does two jobs:
 *
 * * Probes: `{id, spec, deadlineMs}` → `{id, ok, detail}`. A probe costs a socket, not a process
 *   start; the probe is lb/'s, so health means the same in every driver.
 * * DNS inside the world: `{listen: [address, …]}` makes it listen on UDP and TCP port 53 of exactly
 *   those world addresses (the VNets' gateways and the internet link's), closing the others. Each
 *   query goes out as `{dns, tcp, data, at}` (base64 of the message, and the listener address it
 *   arrived on) and its answer comes back as `{dns, data}`; the driver relays it to vipdip's own DNS
 *   server in the root namespace, scoped by `at` to who asks (a VNet's VMs, or the internet), from
 *   the same zone table as the host's answers.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { createInterface } from 'node:readline';
import { probe, type ProbeSpec } from '../../lb/index.ts';

/** The DNS port the helper listens on in the world. */
export const WORLD_DNS_PORT = 53;
/** An answer not back from the driver within this long is dropped (the client retries). */
const DNS_RELAY_MS = 5000;
/** DNS messages held over TCP at most this long per connection without a byte. */
const TCP_IDLE_MS = 10_000;

interface ProbeRequest {
  id: number;
  spec: ProbeSpec;
  deadlineMs: number;
}

interface Listener {
  udp: Socket;
  tcp: Server;
}

const send = (msg: unknown) => process.stdout.write(`${JSON.stringify(msg)}\n`);

export async function runProbeHelper(): Promise<void> {
  const listeners = new Map<string, Listener>();
  const waiting = new Map<number, (data: Buffer) => void>();
  let nextQuery = 1;

  const relay = (data: Buffer, tcp: boolean, at: string): Promise<Buffer | undefined> =>
    new Promise((resolve) => {
      const id = nextQuery++;
      const guard = setTimeout(() => {
        waiting.delete(id);
        resolve(undefined);
      }, DNS_RELAY_MS);
      waiting.set(id, (answer) => {
        clearTimeout(guard);
        waiting.delete(id);
        resolve(answer);
      });
      send({ dns: id, tcp, at, data: data.toString('base64') });
    });

  const serveTcp = (at: string, conn: TcpSocket) => {
    let buf = Buffer.alloc(0);
    conn.setTimeout(TCP_IDLE_MS, () => conn.destroy());
    conn.on('error', () => {});
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > 65_537 * 4) {
        conn.destroy();
        return;
      }
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void relay(Buffer.from(msg), true, at).then((answer) => {
          if (answer === undefined || conn.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(answer.length);
          conn.write(Buffer.concat([len, answer]));
        });
      }
    });
  };

  const listen = async (address: string): Promise<void> => {
    const udp = createSocket('udp4');
    udp.on('message', (msg, rinfo) => {
      void relay(msg, false, address).then((answer) => {
        if (answer !== undefined) udp.send(answer, rinfo.port, rinfo.address, () => {});
      });
    });
    const tcp = createServer((conn) => serveTcp(address, conn));
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(WORLD_DNS_PORT, address, () => resolve());
      });
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(WORLD_DNS_PORT, address, () => resolve());
      });
      udp.on('error', () => {});
      tcp.on('error', () => {});
      listeners.set(address, { udp, tcp });
    } catch (e) {
      udp.close();
      tcp.close();
      process.stderr.write(
        `vipdip netns helper: DNS on ${address}:${WORLD_DNS_PORT}: ${(e as Error).message}\n`,
      );
    }
  };

  const setListening = async (addresses: string[]) => {
    const want = new Set(addresses);
    for (const [a, l] of listeners) {
      if (want.has(a)) continue;
      l.udp.close();
      l.tcp.close();
      listeners.delete(a);
    }
    for (const a of want) if (!listeners.has(a)) await listen(a);
  };

  // Listen requests apply one after the other: two quick ones must not race to bind the same address.
  let listening: Promise<void> = Promise.resolve();
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    let msg: Partial<ProbeRequest> & { listen?: string[]; dns?: number; data?: string };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      continue;
    }
    if (Array.isArray(msg.listen)) {
      const addresses = msg.listen;
      listening = listening.then(() => setListening(addresses));
    } else if (typeof msg.dns === 'number' && typeof msg.data === 'string') {
      waiting.get(msg.dns)?.(Buffer.from(msg.data, 'base64'));
    } else if (typeof msg.id === 'number' && msg.spec !== undefined) {
      const req = msg as ProbeRequest;
      void probe(req.spec, req.deadlineMs).then((r) => send({ id: req.id, ok: r.ok, detail: r.detail }));
    }
  }
  await listening;
  for (const l of listeners.values()) {
    l.udp.close();
    l.tcp.close();
  }
}
