/**
 * The netns driver's prober runs inside the world, where the DIPs are routed (Node cannot enter a
 * namespace itself): the driver starts this once, under `ip netns exec WORLD`, and talks to it over
 * its stdin and stdout, one JSON line per probe each way (`{id, spec, deadlineMs}` →
 * `{id, ok, detail}`). A probe costs a socket, not a process start. The probe is lb/'s, so health
 * means the same in every driver.
 */
import { createInterface } from 'node:readline';
import { probe, type ProbeSpec } from '../../lb/index.ts';

interface Request {
  id: number;
  spec: ProbeSpec;
  deadlineMs: number;
}

export async function runProbeHelper(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      continue;
    }
    void probe(req.spec, req.deadlineMs).then((r) => {
      process.stdout.write(`${JSON.stringify({ id: req.id, ok: r.ok, detail: r.detail })}\n`);
    });
  }
}
