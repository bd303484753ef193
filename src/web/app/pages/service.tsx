/** A cloud service: its VIP (or that it has none), reserved IP, DNS name, VMs and endpoint health. */
import { useState } from 'react';
import type { ReservedIp, Service, ServiceHealth, Vm, Endpoint } from '../../../core/api-shapes.ts';
import { paths } from '../../lib/paths.ts';
import { href } from '../../lib/routes.ts';
import { useApi } from '../cache.ts';
import { HealthBadge, Loading, ProblemText, Section, StateBadge } from '../components/bits.tsx';
import { confirm } from '../components/confirm.tsx';
import { Address, CopyButton } from '../components/copy.tsx';
import { VmActions } from '../components/vm-actions.tsx';
import { Link } from '../router.tsx';
import { useSession } from '../session.ts';
import type { ApiProblem } from '../api.ts';

/** The released state, said in words: no VIP until a VM is allocated again (R3). */
export function NoVip({ testId }: { testId?: string }) {
  return (
    <span className="badge no-vip" data-testid={testId}>
      no VIP — released
    </span>
  );
}

export function ServicePage({ service: name }: { service: string }) {
  const { cache } = useSession();
  const svc = useApi<Service>(cache, paths.service(name));
  const vms = useApi<Vm[]>(cache, paths.serviceVms(name));
  const health = useApi<ServiceHealth>(cache, paths.health(name));

  if (svc.error) {
    return (
      <>
        <h1 tabIndex={-1}>Cloud service {name}</h1>
        <ProblemText problem={svc.error} what={`cloud service ${name}`} />
      </>
    );
  }
  if (svc.data === undefined) return <Loading what={`cloud service ${name}`} />;
  const s = svc.data;
  const list = vms.data ?? [];
  const allocated = list.filter((v) => v.state !== 'deallocated').length;

  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link href={href('overview')}>Overview</Link> / <span aria-current="page">{s.name}</span>
      </nav>
      <h1 tabIndex={-1}>Cloud service {s.name}</h1>
      <dl className="facts">
        <div>
          <dt>VIP</dt>
          <dd data-testid="service-vip">
            {s.vip !== null ? <Address value={s.vip} testId="vip" /> : <NoVip testId="vip" />}
          </dd>
        </div>
        <div>
          <dt>Reserved IP</dt>
          <dd>
            <ReservedIpControl service={s} allocated={allocated} />
          </dd>
        </div>
        <div>
          <dt>DNS name</dt>
          <dd>
            <code>{s.dnsName}</code> <CopyButton text={s.dnsName} />
          </dd>
        </div>
        <div>
          <dt>Subscription</dt>
          <dd>{s.subscription}</dd>
        </div>
        <div>
          <dt>Virtual network</dt>
          <dd>
            {s.vnet !== null ? (
              <Link href={href('vnet', { subscription: s.subscription, vnet: s.vnet })}>{s.vnet}</Link>
            ) : (
              <span className="muted">none</span>
            )}
          </dd>
        </div>
        <div>
          <dt>VMs</dt>
          <dd>
            {list.length} ({allocated} allocated)
          </dd>
        </div>
      </dl>

      <Section title="Virtual machines">
        {vms.error ? <ProblemText problem={vms.error} what="VMs" /> : null}
        {vms.data === undefined && vms.loading ? <Loading what="VMs" /> : null}
        <div className="table-wrap">
          <table className="vms stack">
            <caption className="visually-hidden">VMs of {s.name} with their addresses</caption>
            <thead>
              <tr>
                <th scope="col">VM</th>
                <th scope="col">State</th>
                <th scope="col">VIP</th>
                <th scope="col">DIP</th>
                <th scope="col">Host</th>
                <th scope="col">Static DIP</th>
                <th scope="col">ILPIP</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((v) => (
                <tr key={v.name} data-testid={`vm-row-${v.name}`}>
                  <th scope="row">
                    <Link href={href('vm', { service: s.name, vm: v.name })}>{v.name}</Link>
                  </th>
                  <td data-label="State">
                    <StateBadge state={v.state} />
                  </td>
                  <td data-label="VIP">
                    <Address value={v.state === 'deallocated' ? null : s.vip} none="no VIP" />
                  </td>
                  <td data-label="DIP">
                    <Address value={v.dip} none="no DIP" testId={`dip-${v.name}`} />
                  </td>
                  <td data-label="Host">{v.host ?? <span className="muted">none</span>}</td>
                  <td data-label="Static DIP">
                    <Address value={v.staticDip} />
                  </td>
                  <td data-label="ILPIP">
                    <Address value={v.ilpip} none={v.ilpipEnabled ? 'none (deallocated)' : 'none'} />
                  </td>
                  <td data-label="Actions">
                    <VmActions vm={v} service={s} allocatedInService={allocated} compact />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {vms.data !== undefined && list.length === 0 ? (
            <p className="muted">No VM in this service.</p>
          ) : null}
        </div>
      </Section>

      <Section title="Endpoints and backend health">
        <EndpointHealthView
          service={s}
          vms={list}
          health={health.data}
          error={health.error}
          loading={health.loading}
        />
      </Section>
    </>
  );
}

/** Associate a reserved IP of the subscription with this service, or disassociate the one it has. */
function ReservedIpControl({ service, allocated }: { service: Service; allocated: number }) {
  const session = useSession();
  const rips = useApi<ReservedIp[]>(session.cache, paths.subscriptionReservedIps(service.subscription));
  const [choice, setChoice] = useState('');
  const mine = (rips.data ?? []).find((r) => r.name === service.reservedIp);
  const free = (rips.data ?? []).filter((r) => r.service === null);

  if (service.reservedIp !== null) {
    const disassociate = async () => {
      const ok = await confirm({
        title: `Disassociate reserved IP ${service.reservedIp}?`,
        body: (
          <p>
            {allocated > 0
              ? `${service.name} draws a new VIP from the public pool in place of ${mine?.address ?? 'the reserved address'}.`
              : `${service.name} has no allocated VM: it is left without a VIP.`}{' '}
            The reserved IP {service.reservedIp} stays in subscription {service.subscription}, free to
            associate again.
          </p>
        ),
        confirmLabel: 'Disassociate',
        danger: true,
      });
      if (!ok) return;
      await session.act(
        `Disassociate reserved IP ${service.reservedIp}`,
        () =>
          session.client.send(
            'POST',
            `${paths.reservedIp(service.subscription, service.reservedIp!)}/disassociate`,
          ),
        { exact: [], prefix: ['/v1/'] },
      );
    };
    return (
      <span className="inline-controls">
        <strong>{service.reservedIp}</strong> {mine !== undefined ? <Address value={mine.address} /> : null}
        <button type="button" onClick={() => void disassociate()}>
          Disassociate
        </button>
      </span>
    );
  }

  const associate = async () => {
    const rip = free.find((r) => r.name === choice);
    if (rip === undefined) return;
    const ok = await confirm({
      title: `Associate reserved IP ${rip.name} with ${service.name}?`,
      body: (
        <p>
          {rip.address} becomes the VIP of {service.name}
          {service.vip !== null ? `, in place of ${service.vip}` : ''}, and stays even when every VM is
          deallocated.
        </p>
      ),
      confirmLabel: 'Associate',
    });
    if (!ok) return;
    const done = await session.act(
      `Associate reserved IP ${rip.name} with ${service.name}`,
      () =>
        session.client.send('POST', `${paths.reservedIp(service.subscription, rip.name)}/associate`, {
          service: service.name,
        }),
      { exact: [], prefix: ['/v1/'] },
    );
    if (done) setChoice('');
  };
  return (
    <span className="inline-controls">
      <span className="muted">none</span>
      {rips.error ? <ProblemText problem={rips.error} what="reserved IPs" /> : null}
      {free.length > 0 ? (
        <>
          <label htmlFor="rip-choice" className="visually-hidden">
            Reserved IP to associate
          </label>
          <select id="rip-choice" value={choice} onChange={(e) => setChoice(e.target.value)}>
            <option value="">Choose a reserved IP…</option>
            {free.map((r) => (
              <option key={r.name} value={r.name}>
                {r.name} ({r.address})
              </option>
            ))}
          </select>
          <button type="button" disabled={choice === ''} onClick={() => void associate()}>
            Associate
          </button>
        </>
      ) : rips.data !== undefined ? (
        <span className="muted small">(no free reserved IP in {service.subscription})</span>
      ) : null}
    </span>
  );
}

/** Which endpoints the VMs publish, grouped as the load balancer sees them (one row per lbSet or port). */
export function endpointGroups(vms: Vm[]): { key: string; endpoint: Endpoint; vms: Vm[] }[] {
  const groups = new Map<string, { key: string; endpoint: Endpoint; vms: Vm[] }>();
  for (const v of vms) {
    for (const e of v.endpoints) {
      const key = e.lbSet !== undefined ? `set:${e.lbSet}` : `${e.protocol}:${e.publicPort}:${v.name}`;
      const g = groups.get(key) ?? { key, endpoint: e, vms: [] };
      g.vms.push(v);
      groups.set(key, g);
    }
  }
  return [...groups.values()];
}

export function EndpointHealthView({
  service,
  vms,
  health,
  error,
  loading,
  onlyVm,
}: {
  service: Service;
  vms: Vm[];
  health: ServiceHealth | undefined;
  error: ApiProblem | undefined;
  loading: boolean;
  onlyVm?: string;
}) {
  const noDataPlane = error?.status === 404;
  if (error && !noDataPlane) return <ProblemText problem={error} what="endpoint health" />;
  if (health !== undefined) {
    const eps = health.endpoints
      .map((e) => ({ ...e, backends: e.backends.filter((b) => onlyVm === undefined || b.vm === onlyVm) }))
      .filter((e) => e.backends.length > 0 || onlyVm === undefined);
    if (eps.length === 0) return <p className="muted">No endpoint.</p>;
    return (
      <div className="table-wrap">
        <table className="health">
          <thead>
            <tr>
              <th scope="col">Endpoint</th>
              <th scope="col">Public</th>
              <th scope="col">Backend</th>
              <th scope="col">DIP:port</th>
              <th scope="col">Health</th>
              <th scope="col">Since</th>
            </tr>
          </thead>
          <tbody>
            {eps.flatMap((e) =>
              (e.backends.length > 0 ? e.backends : [null]).map((b, i) => (
                <tr key={`${e.name}-${b?.vm ?? 'none'}`} data-testid={`health-${e.name}-${b?.vm ?? 'none'}`}>
                  {i === 0 ? (
                    <th scope="rowgroup" rowSpan={Math.max(1, e.backends.length)}>
                      {e.name}
                      {e.lbSet !== null ? <div className="muted small">set {e.lbSet}</div> : null}
                    </th>
                  ) : null}
                  {i === 0 ? (
                    <td rowSpan={Math.max(1, e.backends.length)}>
                      <code>
                        {e.vip ?? service.vip ?? '—'}:{e.publicPort}
                      </code>{' '}
                      {e.protocol}
                    </td>
                  ) : null}
                  {b === null ? (
                    <td colSpan={4} className="muted">
                      no backend
                    </td>
                  ) : (
                    <>
                      <td>{b.vm}</td>
                      <td>
                        <code>{b.dip !== null ? `${b.dip}:${b.localPort}` : `—:${b.localPort}`}</code>
                      </td>
                      <td>
                        <HealthBadge state={b.state} />
                        {b.detail !== null ? <div className="muted small">{b.detail}</div> : null}
                      </td>
                      <td>
                        {b.since !== null ? (
                          <time dateTime={b.since}>{new Date(b.since).toLocaleTimeString()}</time>
                        ) : (
                          '—'
                        )}
                      </td>
                    </>
                  )}
                </tr>
              )),
            )}
          </tbody>
        </table>
      </div>
    );
  }
  // No health to show: the endpoints as configured, with their health said to be unknown.
  const groups = endpointGroups(onlyVm === undefined ? vms : vms.filter((v) => v.name === onlyVm));
  return (
    <>
      {noDataPlane ? (
        <p className="notice" data-testid="health-unknown">
          Health unknown — no data plane. The endpoints are shown as configured.
        </p>
      ) : loading ? (
        <Loading what="endpoint health" />
      ) : null}
      {groups.length === 0 ? (
        <p className="muted">No endpoint.</p>
      ) : (
        <div className="table-wrap">
          <table className="health">
            <thead>
              <tr>
                <th scope="col">Endpoint</th>
                <th scope="col">Public</th>
                <th scope="col">Backends (DIP:port)</th>
                <th scope="col">Probe</th>
              </tr>
            </thead>
            <tbody>
              {groups.map((g) => (
                <tr key={g.key}>
                  <th scope="row">
                    {g.endpoint.name}
                    {g.endpoint.lbSet !== undefined ? (
                      <div className="muted small">set {g.endpoint.lbSet}</div>
                    ) : null}
                  </th>
                  <td>
                    <code>
                      {service.vip ?? '—'}:{g.endpoint.publicPort}
                    </code>{' '}
                    {g.endpoint.protocol}
                  </td>
                  <td>
                    <ul className="plain">
                      {g.vms.map((v) => (
                        <li key={v.name}>
                          {v.name}{' '}
                          <code>
                            {v.dip ?? '—'}:{g.endpoint.localPort}
                          </code>{' '}
                          <HealthBadge state="unknown" />
                        </li>
                      ))}
                    </ul>
                  </td>
                  <td className="small">
                    {g.endpoint.probe !== undefined
                      ? `${g.endpoint.probe.protocol} :${g.endpoint.probe.port}${g.endpoint.probe.path ?? ''} every ${g.endpoint.probe.intervalSeconds} s`
                      : 'none'}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
