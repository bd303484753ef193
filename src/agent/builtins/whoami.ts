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
import { exitWithParent, readWorkloadEnv, uniquePorts } from './env.ts';

/** The default port when the VM has no TCP endpoint. */
export const WHOAMI_DEFAULT_PORT = 8000;
/** Requests are logged, but at most this many a second (a benchmark must not drown in its log). */
const LOG_LINES_PER_SECOND = 10;

const proxied = new WeakMap<Socket, { address: string; port: number }>();

export async function runWhoami(): Promise<void> {
  const env = readWorkloadEnv();
  const ports = uniquePorts(env.ports.filter((p) => p.protocol === 'tcp'));
  if (ports.length === 0)
    ports.push({ endpoint: 'http', protocol: 'tcp', port: WHOAMI_DEFAULT_PORT, proxyProtocol: false });

  let second = 0;
  let logged = 0;
  let dropped = 0;
  const log = (req: IncomingMessage, from: string) => {
    const s = Math.floor(Date.now() / 1000);
    if (s !== second) {
      if (dropped > 0) process.stdout.write(`… and ${dropped} more requests\n`);
      second = s;
      logged = 0;
      dropped = 0;
    }
    if (logged++ < LOG_LINES_PER_SECOND) process.stdout.write(`${req.method} ${req.url} from ${from}\n`);
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

  const servers = await Promise.all(
    ports.map(
      (p) =>
        new Promise<{ close(): void }>((resolve, reject) => {
          const server = p.proxyProtocol ? proxyFront(http) : http;
          const listener = p.proxyProtocol ? server : createTcpServer((s) => http.emit('connection', s));
          listener.once('error', reject);
          listener.listen({ host: env.dip, port: p.port }, () => {
            process.stdout.write(
              `whoami ${env.service}/${env.vm} listening on http://${env.dip}:${p.port}/${p.proxyProtocol ? ' (PROXY v2)' : ''}\n`,
            );
            resolve(listener);
          });
        }),
    ),
  );
  exitWithParent(() => {
    for (const s of servers) s.close();
    http.close();
  });
}

/** A TCP front that strips the PROXY v2 header, remembers the address in it, and hands the rest to HTTP. */
function proxyFront(http: Server) {
  return createTcpServer((socket) => {
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
