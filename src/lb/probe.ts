/**
 * The prober for backends reachable from this process (loopback, for the local driver): a TCP probe
 * is a completed connect; an HTTP probe is `GET path` answered with status 200, as Azure's are. Each
 * probe settles by its deadline, whatever the backend does (accepts and never answers, trickles
 * bytes, resets), and never rejects.
 */
import { connect, type Socket } from 'node:net';
import type { ProbeResult, ProbeSpec } from './health.ts';

/** An answer's status line and headers never need more; a backend sending more is not answering. */
const MAX_HEAD_BYTES = 16 * 1024;

const reason = (e: NodeJS.ErrnoException): string =>
  e.code === 'ECONNREFUSED'
    ? 'connection refused'
    : e.code === 'ECONNRESET'
      ? 'connection reset'
      : (e.code ?? e.message);

export function probe(spec: ProbeSpec, deadlineWallMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    let head = '';
    const socket: Socket = connect({ host: spec.address, port: spec.port, noDelay: true });
    const finish = (ok: boolean, detail: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, detail });
    };
    const timer = setTimeout(
      () => finish(false, `no answer within ${deadlineWallMs} ms`),
      Math.max(1, deadlineWallMs),
    );
    socket.on('error', (e: NodeJS.ErrnoException) => finish(false, reason(e)));
    socket.on('connect', () => {
      if (spec.protocol === 'tcp') return finish(true, 'connected');
      socket.write(
        `GET ${spec.path ?? '/'} HTTP/1.1\r\nHost: ${spec.address}:${spec.port}\r\n` +
          'User-Agent: vipdip-probe\r\nConnection: close\r\n\r\n',
      );
    });
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      const eol = head.indexOf('\r\n');
      if (eol >= 0) {
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(head.slice(0, eol));
        if (m === null) return finish(false, 'the answer is not HTTP');
        return finish(m[1] === '200', `HTTP ${m[1]}`);
      }
      if (head.length > MAX_HEAD_BYTES) finish(false, 'the answer is not HTTP');
    });
    socket.on('end', () => finish(false, 'closed without an answer'));
    socket.on('close', () => finish(false, 'closed without an answer'));
  });
}
