/**
 * The `echo` workload: TCP and UDP echo on each endpoint port of its VM (each on its endpoint's
 * protocol), bound to the DIP. With no endpoint it echoes both on port 7000. On a PROXY-protocol
 * endpoint the v2 header is read off and not echoed.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { parseProxyV2 } from '../../lb/index.ts';
import { exitWithParent, readWorkloadEnv, uniquePorts, type WorkloadPort } from './env.ts';

export const ECHO_DEFAULT_PORT = 7000;

export async function runEcho(): Promise<void> {
  const env = readWorkloadEnv();
  let ports = uniquePorts(env.ports);
  if (ports.length === 0) {
    ports = [
      { endpoint: 'echo', protocol: 'tcp', port: ECHO_DEFAULT_PORT, proxyProtocol: false },
      { endpoint: 'echo', protocol: 'udp', port: ECHO_DEFAULT_PORT, proxyProtocol: false },
    ];
  }
  const closers = await Promise.all(
    ports.map((p) => (p.protocol === 'tcp' ? tcpEcho(env.dip, p) : udpEcho(env.dip, p))),
  );
  for (const p of ports)
    process.stdout.write(`echo ${env.service}/${env.vm} on ${p.protocol} ${env.dip}:${p.port}\n`);
  exitWithParent(() => closers.forEach((c) => c()));
}

function tcpEcho(host: string, p: WorkloadPort): Promise<() => void> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.on('end', () => s.end());
    if (!p.proxyProtocol) return void s.pipe(s);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const h = parseProxyV2(buf);
      if (h === undefined) return;
      s.off('data', onData);
      if (h === null) return void s.destroy();
      if (buf.length > h.length) s.write(buf.subarray(h.length));
      s.pipe(s);
    };
    s.on('data', onData);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: p.port }, () => resolve(() => server.close()));
  });
}

function udpEcho(host: string, p: WorkloadPort): Promise<() => void> {
  const socket = createSocket('udp4');
  socket.on('message', (m, r) => {
    let payload = m;
    if (p.proxyProtocol) {
      const h = parseProxyV2(m);
      if (h === null || h === undefined) return;
      payload = m.subarray(h.length);
    }
    socket.send(payload, r.port, r.address);
  });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port: p.port }, () => resolve(() => socket.close()));
  });
}
