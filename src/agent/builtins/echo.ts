/**
 * The `echo` workload: TCP and UDP echo on each endpoint port of its VM (each on its endpoint's
 * protocol), bound to the DIP. With no endpoint it echoes both on port 7000. On a PROXY-protocol
 * endpoint the v2 header is read off and not echoed.
 */
import { createSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';
import { parseProxyV2 } from '../../lb/index.ts';
import {
  exitWithParent,
  ownProcessIo,
  readWorkloadEnv,
  uniquePorts,
  type BuiltinIo,
  type Close,
  type ListenTarget,
  type WorkloadEnv,
  type WorkloadPort,
} from './env.ts';

export const ECHO_DEFAULT_PORT = 7000;

/** The ports echo serves for a VM: its endpoints', or TCP and UDP 7000. Pure. */
export function echoPorts(env: WorkloadEnv): WorkloadPort[] {
  const ports = uniquePorts(env.ports);
  if (ports.length > 0) return ports;
  return [
    { endpoint: 'echo', protocol: 'tcp', port: ECHO_DEFAULT_PORT, proxyProtocol: false },
    { endpoint: 'echo', protocol: 'udp', port: ECHO_DEFAULT_PORT, proxyProtocol: false },
  ];
}

export async function runEcho(): Promise<void> {
  const env = readWorkloadEnv();
  exitWithParent(await serveEcho(env, ownProcessIo(env)));
}

/** Serves one VM's echo; resolves once every port listens (rejects, having closed the rest, if one cannot). */
export async function serveEcho(env: WorkloadEnv, io: BuiltinIo): Promise<Close> {
  const closers: Close[] = [];
  const close = () => closers.forEach((c) => c());
  try {
    for (const p of echoPorts(env)) {
      closers.push(await (p.protocol === 'tcp' ? tcpEcho : udpEcho)(io.listen(p), p));
      io.out(`echo ${env.service}/${env.vm} on ${p.protocol} ${env.dip}:${p.port}`);
    }
  } catch (e) {
    close();
    throw e;
  }
  return close;
}

function tcpEcho(target: ListenTarget, p: WorkloadPort): Promise<Close> {
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.once('close', () => open.delete(s));
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
    server.listen(target, () =>
      resolve(() => {
        server.close();
        for (const s of open) s.destroy();
      }),
    );
  });
}

function udpEcho(target: ListenTarget, p: WorkloadPort): Promise<Close> {
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
  const bind = 'fd' in target ? { fd: target.fd } : { address: target.host, port: target.port };
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(bind, () =>
      resolve(() => {
        try {
          socket.close();
        } catch {
          // closed already
        }
      }),
    );
  });
}
