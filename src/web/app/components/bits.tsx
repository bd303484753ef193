/** Small pieces the pages share. */
import type { ReactNode } from 'react';
import type { BackendState, VmState } from '../../../core/api-shapes.ts';
import type { ApiProblem } from '../api.ts';

export function StateBadge({ state }: { state: VmState }) {
  return <span className={`badge state-${state}`}>{state}</span>;
}

export function HealthBadge({ state }: { state: BackendState }) {
  return <span className={`badge health-${state}`}>{state}</span>;
}

/** A utilisation bar: a native meter (what screen readers read) with the figures beside it. */
export function Usage({ label, bound, usable }: { label: ReactNode; bound: number; usable: number }) {
  const pct = usable === 0 ? 0 : Math.round((bound / usable) * 1000) / 10;
  return (
    <div className="usage">
      <div className="usage-label">{label}</div>
      <meter
        min={0}
        max={Math.max(usable, 1)}
        value={bound}
        low={usable * 0.7}
        high={usable * 0.9}
        optimum={0}
      >
        {pct}%
      </meter>
      <div className="usage-figures">
        {bound} bound / {usable - bound} free <span className="muted">({pct}%)</span>
      </div>
    </div>
  );
}

/** A problem where data would be: its title and detail, never hidden. */
export function ProblemText({ problem, what }: { problem: ApiProblem; what?: string }) {
  const p = problem.problem;
  return (
    <div className="problem" role="alert">
      <strong>
        {what !== undefined ? `${what}: ` : ''}
        {p.title}
      </strong>
      {p.detail ? <> — {p.detail}</> : null}
      {p.status > 0 ? (
        <span className="muted">
          {' '}
          ({p.status}
          {p.code ? ` ${p.code}` : ''})
        </span>
      ) : null}
      {p.errors && p.errors.length > 0 ? (
        <ul>
          {p.errors.map((e, i) => (
            <li key={i}>
              <code>{e.path}</code> {e.message}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}

export function Section({
  title,
  id,
  children,
  actions,
}: {
  title: string;
  id?: string;
  children: ReactNode;
  actions?: ReactNode;
}) {
  const hid = id ?? `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return (
    <section aria-labelledby={hid} className="section">
      <div className="section-head">
        <h2 id={hid}>{title}</h2>
        {actions}
      </div>
      {children}
    </section>
  );
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Local time to the second; the date too when it is not today. The full ISO time is the title. */
export function Time({ iso }: { iso: string }) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return <time>{iso}</time>;
  const now = new Date();
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const today = day === `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  return (
    <time dateTime={iso} title={iso} className="nowrap">
      {today ? '' : `${day} `}
      {pad(d.getHours())}:{pad(d.getMinutes())}:{pad(d.getSeconds())}
    </time>
  );
}
