/**
 * The `whoami` workload: HTTP on each TCP port of its VM's endpoints (and probe ports), bound to the
 * DIP, answering every request with a JSON document of who it is and who it saw:
 * `{vm, service, subscription, dip, vip, remoteAddress, remotePort, host}`. On a PROXY-protocol
 * endpoint it reads the client's address from the PROXY v2 header first.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { formatIpv4, type Ipv4 } from '../../core/index.ts';
import { parseProxyV2 } from '../../lb/index.ts';
import {
  exitWithParent,
  ownProcessIo,
  readWorkloadEnv,
  uniquePorts,
  type BuiltinIo,
  type Close,
  type WorkloadEnv,
} from './env.ts';

/** The default port when the VM has no TCP endpoint. */
export const WHOAMI_DEFAULT_PORT = 8000;
/** Requests are logged, but at most this many a second (a benchmark must not drown in its log). */
const LOG_LINES_PER_SECOND = 10;

/** The TCP ports whoami serves for a VM: its endpoints' and probes', or the default. Pure. */
export function whoamiPorts(env: WorkloadEnv) {
  const ports = uniquePorts(env.ports.filter((p) => p.protocol === 'tcp'));
  if (ports.length === 0)
    ports.push({ endpoint: 'http', protocol: 'tcp', port: WHOAMI_DEFAULT_PORT, proxyProtocol: false });
  return ports;
}

export async function runWhoami(): Promise<void> {
  const env = readWorkloadEnv();
  const close = await serveWhoami(env, ownProcessIo(env));
  exitWithParent(close);
}

/** Serves one VM's whoami; resolves once every port listens (rejects, having closed the rest, if one cannot). */
export async function serveWhoami(env: WorkloadEnv, io: BuiltinIo): Promise<Close> {
  const proxied = new WeakMap<Socket, { address: string; port: number }>();
  const open = new Set<Socket>();
  let second = 0;
  let logged = 0;
  let dropped = 0;
  const log = (req: IncomingMessage, from: string) => {
    const s = Math.floor(Date.now() / 1000);
    if (s !== second) {
      if (dropped > 0) io.out(`… and ${dropped} more requests`);
      second = s;
      logged = 0;
      dropped = 0;
    }
    if (logged++ < LOG_LINES_PER_SECOND) io.out(`${req.method} ${req.url} from ${from}`);
    else dropped++;
  };

  const http: Server = createHttpServer({ keepAlive: true }, (req, res) => {
    const peer = proxied.get(req.socket) ?? {
      address: req.socket.remoteAddress,
      port: req.socket.remotePort,
    };
    // The balancer's probes come every few seconds for ever: not worth a line each.
    if (req.headers['user-agent'] !== 'vipdip-probe') log(req, `${peer.address}:${peer.port}`);
    const body = JSON.stringify({
      vm: env.vm,
      service: env.service,
      subscription: env.subscription,
      dip: env.dip,
      vip: env.vip,
      remoteAddress: peer.address,
      remotePort: peer.port,
      host: env.host,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  http.on('clientError', (_e, socket) => socket.destroy());
  const track = (s: Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
  };

  const listeners: { close(): void }[] = [];
  const close = () => {
    for (const l of listeners) l.close();
    http.close();
    for (const s of open) s.destroy();
  };
  try {
    for (const p of whoamiPorts(env)) {
      const listener = p.proxyProtocol
        ? proxyFront(http, proxied, track)
        : createTcpServer((s) => {
            track(s);
            http.emit('connection', s);
          });
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(io.listen(p), () => resolve());
      });
      listeners.push(listener);
      io.out(
        `whoami ${env.service}/${env.vm} listening on http://${env.dip}:${p.port}/${p.proxyProtocol ? ' (PROXY v2)' : ''}`,
      );
    }
  } catch (e) {
    close();
    throw e;
  }
  return close;
}

/** A TCP front that strips the PROXY v2 header, remembers the address in it, and hands the rest to HTTP. */
function proxyFront(
  http: Server,
  proxied: WeakMap<Socket, { address: string; port: number }>,
  track: (s: Socket) => void,
) {
  return createTcpServer((socket) => {
    track(socket);
    let buf = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const h = parseProxyV2(buf);
      if (h === undefined) return;
      socket.off('data', onData);
      if (h === null) return void socket.destroy();
      if (h.command === 'proxy')
        proxied.set(socket, { address: formatIpv4(h.srcIp as Ipv4), port: h.srcPort });
      socket.pause();
      if (buf.length > h.length) socket.unshift(buf.subarray(h.length));
      http.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onData);
  });
}
