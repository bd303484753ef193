/**
 * Real sockets for data-plane tests: small backends that say who they are and who they saw, clients
 * that bind a chosen source address, and a patient `eventually`.
 *
 * Every test file takes its own block of 127.0.0.0/8 (listed in its header) for its addresses, so
 * test files running in parallel never meet on an address; ports are 0 (picked by the kernel)
 * wherever the code under test allows it.
 */
import { createSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface Backend {
  id: string;
  host: string;
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** The remote address of each accepted connection, in order. */
  seen: string[];
  sockets: Set<Socket>;
  close(): Promise<void>;
}

export type BackendMode =
  /** Writes `ID REMOTE-ADDRESS\n` on connect, then echoes. */
  | 'hello'
  /** Accepts, then resets the connection at once. */
  | 'reset'
  /** Accepts and never says a word. */
  | 'silent';

export async function tcpBackend(
  id: string,
  host: string,
  mode: BackendMode = 'hello',
  port = 0,
): Promise<Backend> {
  const sockets = new Set<Socket>();
  const b: Backend = {
    id,
    host,
    port: 0,
    accepted: 0,
    seen: [],
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    b.accepted++;
    b.seen.push(s.remoteAddress ?? '?');
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (mode === 'reset') return void s.resetAndDestroy();
    if (mode === 'silent') return;
    s.write(`${id} ${s.remoteAddress}\n`);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
  b.port = (server.address() as { port: number }).port;
  return b;
}

export interface Hello {
  id: string;
  seen: string;
  socket: Socket;
}

/** Connects (from `localAddress` if given) and reads the backend's hello line; keeps the socket open. */
export function hello(host: string, port: number, localAddress?: string, timeoutMs = 10_000): Promise<Hello> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no hello from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`closed before the hello: ${JSON.stringify(buf)}`), { code: 'CLOSED' }));
    });
    socket.on('data', function onData(d: Buffer) {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.removeAllListeners('close');
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      const [id, seen] = buf.slice(0, nl).split(' ');
      resolve({ id: id!, seen: seen!, socket });
    });
  });
}

/** Connects and says how the connection ended: answered (a hello line), reset, or closed without a word. */
export async function outcome(
  host: string,
  port: number,
  localAddress?: string,
): Promise<'answered' | 'reset' | 'closed' | 'refused'> {
  try {
    const h = await hello(host, port, localAddress);
    h.socket.destroy();
    return 'answered';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ECONNRESET') return 'reset';
    if (code === 'ECONNREFUSED') return 'refused';
    if (code === 'CLOSED') return 'closed';
    throw e;
  }
}

/** Sends a line on an open socket and waits for it to come back (through an echoing backend). */
export function roundTrip(socket: Socket, line: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error(`no echo of ${JSON.stringify(line)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) {
        clearTimeout(timer);
        socket.off('data', onData);
        resolve(buf.trimEnd());
      }
    };
    socket.on('data', onData);
    socket.write(`${line}\n`);
  });
}

/** Resolves once `socket` closes, with whether it was reset or closed. */
export function closed(socket: Socket, timeoutMs = 20_000): Promise<'reset' | 'closed'> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve('closed');
    let reset = false;
    const timer = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(reset ? 'reset' : 'closed');
    });
    socket.resume();
  });
}

/** Sends one datagram (from `localAddress` if given) and waits for one answer, or undefined. */
export function udpAsk(
  host: string,
  port: number,
  text: string,
  opts: { localAddress?: string; localPort?: number; timeoutMs?: number } = {},
): Promise<{ text: string; from: string } | undefined> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, opts.timeoutMs ?? 1000);
    s.on('error', (e) => {
      clearTimeout(timer);
      s.close();
      reject(e);
    });
    s.on('message', (m, r) => {
      clearTimeout(timer);
      s.close();
      resolve({ text: m.toString(), from: `${r.address}:${r.port}` });
    });
    s.bind({ address: opts.localAddress ?? '127.0.0.1', port: opts.localPort ?? 0 }, () =>
      s.send(text, port, host),
    );
  });
}

/** Waits until `fn` answers something other than undefined/false, checking every `everyMs`. */
export async function eventually<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
  everyMs = 25,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(
        `${what}: not within ${timeoutMs} ms${last instanceof Error ? ` (last error: ${last.message})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
