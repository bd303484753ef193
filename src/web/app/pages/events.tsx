/** Every event, newest first, live; filtered by type, resource and subscription. */
import { useEffect, useMemo, useState } from 'react';
import type { Event as ApiEvent, EventPage } from '../../../core/api-shapes.ts';
import { describeChange, isAddressChange } from '../../lib/describe.ts';
import { paths } from '../../lib/paths.ts';
import { Loading, ProblemText, Time } from '../components/bits.tsx';
import { Reason } from '../components/chaos.tsx';
import { asProblem, useSession } from '../session.ts';
import type { ApiProblem } from '../api.ts';

const PAGE = 200;
/** The timeline keeps this many events in memory; older ones can be fetched again. */
const KEEP = 5000;

export function EventsPage() {
  const session = useSession();
  const [events, setEvents] = useState<ApiEvent[] | undefined>(undefined);
  const [error, setError] = useState<ApiProblem | undefined>(undefined);
  const [more, setMore] = useState(false);
  const [type, setType] = useState('');
  const [text, setText] = useState('');
  const [sub, setSub] = useState('');
  const [addressesOnly, setAddressesOnly] = useState(false);

  useEffect(() => {
    let gone = false;
    let loaded = false;
    const early: ApiEvent[] = [];
    const off = session.bus.onEvent((e) => {
      if (!loaded) early.push(e);
      else
        setEvents((prev) =>
          prev?.some((x) => x.seq === e.seq) ? prev : [e, ...(prev ?? [])].slice(0, KEEP),
        );
    });
    session.client
      .get<EventPage>(`${paths.events}?order=desc&limit=${PAGE}`)
      .then((page) => {
        if (gone) return;
        loaded = true;
        const seen = new Set(page.events.map((e) => e.seq));
        setEvents([...early.filter((e) => !seen.has(e.seq)), ...page.events].sort((a, b) => b.seq - a.seq));
        setMore(page.events.length === PAGE);
      })
      .catch((e: unknown) => {
        if (!gone) setError(asProblem(e));
      });
    return () => {
      gone = true;
      off();
    };
  }, [session]);

  const older = async () => {
    const last = events?.at(-1);
    if (last === undefined) return;
    try {
      const page = await session.client.get<EventPage>(
        `${paths.events}?order=desc&limit=${PAGE}&before=${last.seq}`,
      );
      setEvents((prev) => [...(prev ?? []), ...page.events]);
      setMore(page.events.length === PAGE);
    } catch (e) {
      setError(asProblem(e));
    }
  };

  const types = useMemo(() => [...new Set((events ?? []).map((e) => e.type))].sort(), [events]);
  const subs = useMemo(
    () => [...new Set((events ?? []).map((e) => e.subscription ?? '(fabric)'))].sort(),
    [events],
  );
  const needle = text.trim().toLowerCase();
  const shown = (events ?? []).filter(
    (e) =>
      (type === '' || e.type === type) &&
      (sub === '' || (e.subscription ?? '(fabric)') === sub) &&
      (!addressesOnly || isAddressChange(e)) &&
      (needle === '' ||
        e.resource.toLowerCase().includes(needle) ||
        e.reason.toLowerCase().includes(needle) ||
        describeChange(e).toLowerCase().includes(needle)),
  );

  return (
    <>
      <h1 tabIndex={-1}>Events</h1>
      <form className="filters" role="search" aria-label="Filter events" onSubmit={(e) => e.preventDefault()}>
        <label>
          Type
          <select value={type} onChange={(e) => setType(e.target.value)}>
            <option value="">all types</option>
            {types.map((t) => (
              <option key={t}>{t}</option>
            ))}
          </select>
        </label>
        {session.operator ? (
          <label>
            Subscription
            <select value={sub} onChange={(e) => setSub(e.target.value)}>
              <option value="">all</option>
              {subs.map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
        ) : null}
        <label>
          Resource, reason or change contains
          <input
            type="search"
            value={text}
            onChange={(e) => setText(e.target.value)}
            placeholder="vm/shop/web1"
          />
        </label>
        <label className="checkbox">
          <input
            type="checkbox"
            checked={addressesOnly}
            onChange={(e) => setAddressesOnly(e.target.checked)}
          />{' '}
          Address changes only
        </label>
      </form>
      {error ? <ProblemText problem={error} what="events" /> : null}
      {events === undefined && error === undefined ? <Loading what="events" /> : null}
      {events !== undefined ? (
        <>
          <p className="muted" role="status">
            {shown.length} of {events.length} events shown{more ? ' (older ones: below)' : ''}.
          </p>
          <div className="table-wrap">
            <table className="timeline" data-testid="timeline">
              <caption className="visually-hidden">Events, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Time</th>
                  <th scope="col">Type</th>
                  <th scope="col">Resource</th>
                  <th scope="col">Change</th>
                  <th scope="col">Reason</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((e) => (
                  <tr key={e.seq} className={isAddressChange(e) ? 'address-change' : undefined}>
                    <td>{e.seq}</td>
                    <td>
                      <Time iso={e.time} />
                    </td>
                    <td>
                      <code>{e.type}</code>
                    </td>
                    <td>{e.resource}</td>
                    <td>{describeChange(e)}</td>
                    <td>
                      <Reason reason={e.reason} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {more ? (
            <button type="button" onClick={() => void older()}>
              Older events
            </button>
          ) : null}
        </>
      ) : null}
    </>
  );
}
