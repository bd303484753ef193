/** A VM: both addresses, FQDNs, endpoints, workload, and the history of its addresses. */
import { useEffect, useMemo, useState } from 'react';
import type {
  Event as ApiEvent,
  EventPage,
  Service,
  ServiceHealth,
  Vm,
  WorkloadLogs,
} from '../../../core/api-shapes.ts';
import { changeOf, isAddressChange } from '../../lib/describe.ts';
import { workloadShown } from '../../lib/workload.ts';
import { paths, resources } from '../../lib/paths.ts';
import { href } from '../../lib/routes.ts';
import { useApi } from '../cache.ts';
import { Loading, ProblemText, Section, StateBadge, Time } from '../components/bits.tsx';
import { Address, CopyButton } from '../components/copy.tsx';
import { VmActions } from '../components/vm-actions.tsx';
import { Link, navigate } from '../router.tsx';
import { asProblem, useSession } from '../session.ts';
import type { ApiProblem } from '../api.ts';
import { EndpointHealthView, NoVip } from './service.tsx';
import { Reason } from '../components/chaos.tsx';

export function VmPage({ service: serviceName, vm: vmName }: { service: string; vm: string }) {
  const { cache } = useSession();
  const vm = useApi<Vm>(cache, paths.vm(serviceName, vmName));
  const svc = useApi<Service>(cache, paths.service(serviceName));
  const siblings = useApi<Vm[]>(cache, paths.serviceVms(serviceName));
  const health = useApi<ServiceHealth>(cache, paths.health(serviceName));
  const logs = useApi<WorkloadLogs>(cache, paths.logs(serviceName, vmName));
  const title = `VM ${serviceName}/${vmName}`;

  if (vm.error) {
    return (
      <>
        <h1 tabIndex={-1}>{title}</h1>
        <ProblemText problem={vm.error} what={title} />
      </>
    );
  }
  if (vm.data === undefined) return <Loading what={title} />;
  const v = vm.data;
  const s = svc.data;
  const allocated = (siblings.data ?? []).filter((x) => x.state !== 'deallocated').length;
  const vip = v.state === 'deallocated' ? null : (s?.vip ?? null);

  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link href={href('overview')}>Overview</Link> /{' '}
        <Link href={href('service', { service: v.service })}>{v.service}</Link> /{' '}
        <span aria-current="page">{v.name}</span>
      </nav>
      <h1 tabIndex={-1}>
        {title} <StateBadge state={v.state} />
      </h1>
      <VmActions
        vm={v}
        service={s}
        allocatedInService={allocated}
        onDeleted={() => navigate(href('service', { service: v.service }))}
      />

      <dl className="facts">
        <div>
          <dt>DIP</dt>
          <dd>
            <Address value={v.dip} none="no DIP" testId="vm-dip" />
            {v.dip === null ? <span className="muted small"> released: deallocated</span> : null}
          </dd>
        </div>
        <div>
          <dt>VIP (of {v.service})</dt>
          <dd>
            {vip !== null ? (
              <Address value={vip} testId="vm-vip" />
            ) : s !== undefined && s.vip === null ? (
              <NoVip testId="vm-vip" />
            ) : (
              <Address value={null} none="not reachable while deallocated" testId="vm-vip" />
            )}
          </dd>
        </div>
        <div>
          <dt>Instance-level public IP</dt>
          <dd>
            <Address value={v.ilpip} none={v.ilpipEnabled ? 'none while deallocated' : 'not enabled'} />
          </dd>
        </div>
        <div>
          <dt>Static DIP</dt>
          <dd>
            <Address value={v.staticDip} none="none: drawn at random" />
          </dd>
        </div>
        <div>
          <dt>Host</dt>
          <dd>
            {v.host !== null ? `${v.host} (rack ${v.rack ?? '?'})` : <span className="muted">none</span>}
          </dd>
        </div>
        <div>
          <dt>Subnet</dt>
          <dd>
            <Link href={href('vnet', { subscription: v.subscription, vnet: v.vnet })}>{v.vnet}</Link>/
            {v.subnet}
          </dd>
        </div>
        <div>
          <dt>Internal FQDN</dt>
          <dd>
            <code>{v.fqdns.internal}</code> <CopyButton text={v.fqdns.internal} />
          </dd>
        </div>
        <div>
          <dt>Public FQDN</dt>
          <dd>
            {v.fqdns.public !== null ? (
              <>
                <code>{v.fqdns.public}</code> <CopyButton text={v.fqdns.public} />
              </>
            ) : (
              <span className="muted">none (no ILPIP)</span>
            )}
          </dd>
        </div>
        <div>
          <dt>Subscription</dt>
          <dd>{v.subscription}</dd>
        </div>
      </dl>

      <Section title="Endpoints">
        {v.endpoints.length === 0 ? (
          <p className="muted">No endpoint.</p>
        ) : (
          <>
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Protocol</th>
                    <th scope="col">Public (VIP:port)</th>
                    <th scope="col">Local (DIP:port)</th>
                    <th scope="col">Load-balanced set</th>
                    <th scope="col">Distribution</th>
                    <th scope="col">Idle timeout</th>
                    <th scope="col">ACL</th>
                  </tr>
                </thead>
                <tbody>
                  {v.endpoints.map((e) => (
                    <tr key={e.name}>
                      <th scope="row">{e.name}</th>
                      <td>{e.protocol}</td>
                      <td>
                        <code>
                          {vip ?? '—'}:{e.publicPort}
                        </code>
                      </td>
                      <td>
                        <code>
                          {v.dip ?? '—'}:{e.localPort}
                        </code>
                      </td>
                      <td>{e.lbSet ?? <span className="muted">none</span>}</td>
                      <td>{e.distribution}</td>
                      <td>{e.idleTimeoutMinutes} min</td>
                      <td>
                        {e.acl.length === 0 ? <span className="muted">none</span> : `${e.acl.length} rules`}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <h3>Health of this backend</h3>
            {s !== undefined ? (
              <EndpointHealthView
                service={s}
                vms={[v]}
                health={health.data}
                error={health.error}
                loading={health.loading}
                onlyVm={v.name}
              />
            ) : null}
          </>
        )}
      </Section>

      <Section title="Workload">
        <WorkloadView vm={v} logs={logs.data} error={logs.error} loading={logs.loading} />
      </Section>

      <Section title="Address history">
        {/* A new set of resources (a reserved IP associated) is a new history: read afresh. */}
        <AddressHistory key={s?.reservedIp ?? ''} vm={v} reservedIp={s?.reservedIp ?? null} />
      </Section>
    </>
  );
}

function WorkloadView({
  vm,
  logs,
  error,
  loading,
}: {
  vm: Vm;
  logs: WorkloadLogs | undefined;
  error: ApiProblem | undefined;
  loading: boolean;
}) {
  const head = (
    <p>
      <WorkloadName workload={vm.workload} />
      {logs !== undefined ? (
        <>
          {' '}
          · <span className={`badge workload-${logs.status}`}>{logs.status}</span>
          {logs.pid !== null ? ` · pid ${logs.pid}` : ''} · {logs.restarts} restart
          {logs.restarts === 1 ? '' : 's'}
        </>
      ) : null}
    </p>
  );
  if (error?.status === 404)
    return (
      <>
        {head}
        <p className="notice" data-testid="no-logs">
          No workload logs — no data plane runs this VM&apos;s workload.
        </p>
      </>
    );
  if (error)
    return (
      <>
        {head}
        <ProblemText problem={error} what="workload logs" />
      </>
    );
  if (logs === undefined)
    return (
      <>
        {head}
        {loading ? <Loading what="workload logs" /> : null}
      </>
    );
  return (
    <>
      {head}
      {logs.lines.length === 0 ? (
        <p className="muted">No log line yet.</p>
      ) : (
        <pre className="logs" aria-label={`Last log lines of ${vm.name}`} tabIndex={0}>
          {logs.lines.map((l, i) => (
            <span key={i} className={`log-${l.stream}`}>
              {l.time} {l.stream === 'stderr' ? '! ' : '  '}
              {l.text}
              {'\n'}
            </span>
          ))}
        </pre>
      )}
    </>
  );
}

/** At most this many history events per page. */
const HISTORY_PAGE = 200;

/**
 * Every change of the VM's addresses and state, and of its service's VIP, newest first: the log
 * filtered to those resources, then kept up to date from the live stream.
 */
function AddressHistory({ vm, reservedIp }: { vm: Vm; reservedIp: string | null }) {
  const session = useSession();
  const names = useMemo(
    () => [
      resources.vm(vm.service, vm.name),
      resources.service(vm.service),
      ...(reservedIp !== null ? [resources.reservedIp(vm.subscription, reservedIp)] : []),
    ],
    [vm.service, vm.name, vm.subscription, reservedIp],
  );
  const [events, setEvents] = useState<ApiEvent[] | undefined>(undefined);
  const [error, setError] = useState<ApiProblem | undefined>(undefined);
  const [more, setMore] = useState(false);
  const [addressesOnly, setAddressesOnly] = useState(false);

  const key = names.join(',');
  useEffect(() => {
    let gone = false;
    let loaded = false;
    const early: ApiEvent[] = [];
    // Subscribed before the first page is read, so that nothing falls between the two.
    const off = session.bus.onEvent((e) => {
      if (!names.includes(e.resource)) return;
      if (!loaded) early.push(e);
      else setEvents((prev) => (prev?.some((x) => x.seq === e.seq) ? prev : [e, ...(prev ?? [])]));
    });
    session.client
      .get<EventPage>(`${paths.events}?order=desc&limit=${HISTORY_PAGE}&resource=${encodeURIComponent(key)}`)
      .then((page) => {
        if (gone) return;
        loaded = true;
        const seen = new Set(page.events.map((e) => e.seq));
        const merged = [...early.filter((e) => !seen.has(e.seq)), ...page.events];
        setEvents(merged.sort((a, b) => b.seq - a.seq));
        setMore(page.events.length === HISTORY_PAGE);
      })
      .catch((e: unknown) => {
        if (!gone) setError(asProblem(e));
      });
    return () => {
      gone = true;
      off();
    };
  }, [session, names, key]);

  const older = async () => {
    const last = events?.at(-1);
    if (last === undefined) return;
    try {
      const page = await session.client.get<EventPage>(
        `${paths.events}?order=desc&limit=${HISTORY_PAGE}&before=${last.seq}&resource=${encodeURIComponent(key)}`,
      );
      setEvents((prev) => [...(prev ?? []), ...page.events]);
      setMore(page.events.length === HISTORY_PAGE);
    } catch (e) {
      setError(asProblem(e));
    }
  };

  if (error) return <ProblemText problem={error} what="address history" />;
  if (events === undefined) return <Loading what="address history" />;
  const shown = addressesOnly ? events.filter(isAddressChange) : events;
  return (
    <>
      <label className="checkbox">
        <input type="checkbox" checked={addressesOnly} onChange={(e) => setAddressesOnly(e.target.checked)} />{' '}
        Address changes only
      </label>
      <div className="table-wrap">
        <table className="history" data-testid="address-history">
          <caption className="visually-hidden">
            Address and state history of {vm.service}/{vm.name}, newest first
          </caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Change</th>
              <th scope="col">Reason</th>
              <th scope="col">Event</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((e) => {
              const c = changeOf(e);
              return (
                <tr
                  key={e.seq}
                  className={isAddressChange(e) ? 'address-change' : undefined}
                  data-testid={`history-${e.seq}`}
                >
                  <td>
                    <Time iso={e.time} />
                  </td>
                  <td>
                    {c === null ? (
                      <span className="muted">—</span>
                    ) : (
                      <>
                        <strong>{c.what}</strong> <code>{c.from}</code> → <code>{c.to}</code>
                      </>
                    )}
                  </td>
                  <td>
                    <Reason reason={e.reason} />
                  </td>
                  <td className="muted small">
                    {e.type} #{e.seq}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {shown.length === 0 ? <p className="muted">No change recorded.</p> : null}
      {more ? (
        <button type="button" onClick={() => void older()}>
          Older changes
        </button>
      ) : null}
    </>
  );
}

/** The image a VM runs (or the operator's inline command). */
function WorkloadName({ workload }: { workload: string | null }) {
  const w = workloadShown(workload);
  if (w.kind === 'none') {
    return (
      <>
        Workload: <span className="muted">none</span>
      </>
    );
  }
  if (w.kind === 'image') {
    return (
      <>
        Image: <code data-testid="vm-image">{w.image}</code>
      </>
    );
  }
  return (
    <>
      Workload: <span className="muted">inline command</span> <code>{w.command}</code>
    </>
  );
}
