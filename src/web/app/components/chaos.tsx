/**
 * Chaos on the dashboard: a banner for each running run (what, since when, the next step, a stop
 * button), and the mark on events a run caused.
 */
import { useEffect, useState } from 'react';
import type { ChaosRun } from '../../../core/api-shapes.ts';
import { chaosRunOf, nextText, overWhat, ratesText, span, stepsDone } from '../../lib/chaos.ts';
import { useSession } from '../session.ts';

/** Runs are not in the event stream (only what they do is): their state is read this often. */
const CHAOS_POLL_MS = 2000;
/** The countdown to the next step ticks this often. */
const TICK_MS = 1000;

export function ChaosBanner() {
  const session = useSession();
  const [runs, setRuns] = useState<ChaosRun[]>([]);
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    let gone = false;
    const load = () =>
      session.client
        .get<ChaosRun[]>('/v1/chaos')
        .then((r) => {
          if (!gone) setRuns(r.filter((x) => x.state === 'running' || x.state === 'stopping'));
        })
        .catch(() => {
          // A server without chaos, or a passing failure: no banner, and the next poll tries again.
          if (!gone) setRuns([]);
        });
    void load();
    const poll = setInterval(() => void load(), CHAOS_POLL_MS);
    const tick = setInterval(() => setNow(Date.now()), TICK_MS);
    return () => {
      gone = true;
      clearInterval(poll);
      clearInterval(tick);
    };
  }, [session]);

  if (runs.length === 0) return null;
  const stop = async (r: ChaosRun) => {
    await session.act(`Stop chaos run ${r.id}`, async () => {
      await session.client.send('POST', `/v1/chaos/${encodeURIComponent(r.id)}/stop`);
      setRuns((prev) => prev.filter((x) => x.id !== r.id));
    });
  };
  return (
    <section className="chaos-banner" aria-label="Chaos" data-testid="chaos-banner">
      {runs.map((r) => {
        const next = nextText(r, now);
        const last = r.recent.at(-1);
        return (
          <div key={r.id} className="chaos-run" data-testid={`chaos-run-${r.id}`}>
            <p>
              <strong>Chaos run {r.id}</strong> over {overWhat(r)}: {r.state} since{' '}
              <time dateTime={r.startedAt}>{new Date(r.startedAt).toLocaleTimeString()}</time> (
              {span(now - Date.parse(r.startedAt))})
              {r.endsAt !== null
                ? `, weather until ${new Date(r.endsAt).toLocaleTimeString()}`
                : ', until stopped'}
              . {ratesText(r)}; {stepsDone(r)} steps done.
            </p>
            <p data-testid={`chaos-next-${r.id}`}>
              Next: {next ?? 'nothing'}
              {last !== undefined ? (
                <span className="muted">
                  {' '}
                  — last: {last.action} {last.target} ({last.outcome})
                </span>
              ) : null}
            </p>
            {r.state === 'running' ? (
              <button type="button" onClick={() => void stop(r)}>
                Stop chaos run {r.id}
              </button>
            ) : null}
          </div>
        );
      })}
    </section>
  );
}

/** An event's reason, marked when a chaos run caused it. */
export function Reason({ reason }: { reason: string }) {
  const run = chaosRunOf(reason);
  if (run === null) return <>{reason}</>;
  return (
    <>
      <span className="badge chaos-badge" title={`caused by chaos run ${run}`}>
        chaos
      </span>{' '}
      {reason}
    </>
  );
}
