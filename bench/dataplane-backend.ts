/**
 * The benchmark's backends, run as workloads of the benchmark's VMs (so on their DIPs), and reached
 * the same way by the direct path, vipdip and HAProxy: `http` answers every request with a 2-byte
 * body (keep-alive, or closing when asked); `udp` echoes datagrams. Minimal on purpose, so that the
 * figures measure the path to the backend rather than the backend.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';

const [mode] = process.argv.slice(2);
const host = process.env.VIPDIP_DIP ?? '127.0.0.1';

if (mode === 'http') {
  const port = Number(process.env.VIPDIP_PORT_HTTP ?? 8000);
  const server = createServer({ keepAlive: true }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end('ok');
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, host, () => process.stdout.write(`http backend on ${host}:${port}\n`));
} else if (mode === 'udp') {
  const port = Number(process.env.VIPDIP_PORT_ECHO ?? 7000);
  const s = createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  s.bind(port, host, () => process.stdout.write(`udp echo on ${host}:${port}\n`));
} else {
  process.stderr.write(`usage: dataplane-backend.ts http|udp\n`);
  process.exit(2);
}
// A workload exits with its agent: its stdin closes then.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
