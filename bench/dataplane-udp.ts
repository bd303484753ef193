/**
 * The UDP request/response load generator: FLOWS sockets (distinct flows), each keeping WINDOW
 * datagrams in flight against HOST:PORT for SECONDS, and prints the answers per second as JSON.
 * A datagram lost on the way is replaced after a short wait, so a loss shrinks the rate, not the run.
 */
import { createSocket, type Socket } from 'node:dgram';

const [host, portText, secondsText, flowsText = '16', windowText = '4'] = process.argv.slice(2);
const port = Number(portText);
const seconds = Number(secondsText);
const flows = Number(flowsText);
const window = Number(windowText);
const payload = Buffer.alloc(64, 1);
const LOSS_WAIT_MS = 100;

let answers = 0;
let running = true;
const sockets: Socket[] = [];
const inFlight: number[] = [];
const lastAnswer: number[] = [];

await Promise.all(
  Array.from({ length: flows }, (_, i) => {
    const s = createSocket('udp4');
    sockets.push(s);
    inFlight.push(0);
    lastAnswer.push(Date.now());
    s.on('message', () => {
      answers++;
      lastAnswer[i] = Date.now();
      if (running) s.send(payload, port, host);
      else inFlight[i]!--;
    });
    return new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  }),
);
const start = Date.now();
sockets.forEach((s, i) => {
  for (let k = 0; k < window; k++) s.send(payload, port, host);
  inFlight[i] = window;
});
const refill = setInterval(() => {
  const now = Date.now();
  sockets.forEach((s, i) => {
    if (now - lastAnswer[i]! > LOSS_WAIT_MS) {
      s.send(payload, port, host);
      lastAnswer[i] = now;
    }
  });
}, LOSS_WAIT_MS);
await new Promise((r) => setTimeout(r, seconds * 1000));
running = false;
clearInterval(refill);
const elapsed = (Date.now() - start) / 1000;
process.stdout.write(
  `${JSON.stringify({ answersPerSecond: answers / elapsed, answers, seconds: elapsed })}\n`,
);
for (const s of sockets) s.close();
