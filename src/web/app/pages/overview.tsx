/** Overview: subscriptions, every service's VIP and its VMs' DIPs, address utilisation, hosts. */
import type { Host, Pool, Service, Subscription, Vm, Vnet, VmState } from '../../../core/api-shapes.ts';
import { paths } from '../../lib/paths.ts';
import { href } from '../../lib/routes.ts';
import { useApi } from '../cache.ts';
import { Address } from '../components/copy.tsx';
import { Loading, ProblemText, Section, Usage } from '../components/bits.tsx';
import { confirm } from '../components/confirm.tsx';
import { Link } from '../router.tsx';
import { useSession } from '../session.ts';
import { NoVip } from './service.tsx';

const STATES: readonly VmState[] = ['running', 'stopped', 'deallocated'];

export function OverviewPage() {
  const { cache, operator, whoami } = useSession();
  const subs = useApi<Subscription[]>(cache, paths.subscriptions);
  const services = useApi<Service[]>(cache, paths.services);
  const vms = useApi<Vm[]>(cache, paths.vms);
  const vnets = useApi<Vnet[]>(cache, paths.vnets);
  // Pools and hosts are the operator's: a subscription token is not even asked for them.
  const pools = useApi<Pool[]>(cache, operator ? paths.pools : null);
  const hosts = useApi<Host[]>(cache, operator ? paths.hosts : null);

  const vmsOf = (service: string) => (vms.data ?? []).filter((v) => v.service === service);

  return (
    <>
      <h1 tabIndex={-1}>Overview</h1>
      <p className="muted">
        {operator
          ? 'Signed in as the operator: every subscription.'
          : `Subscription ${whoami.subscription ?? ''}.`}
      </p>

      <Section title="Subscriptions">
        {subs.error ? <ProblemText problem={subs.error} what="subscriptions" /> : null}
        {subs.data === undefined && subs.loading ? <Loading what="subscriptions" /> : null}
        {subs.data !== undefined ? (
          <div className="cards">
            {subs.data.map((s) => {
              const mine = (vms.data ?? []).filter((v) => v.subscription === s.name);
              const svcCount = (services.data ?? []).filter((x) => x.subscription === s.name).length;
              return (
                <div key={s.name} className="card" data-testid={`subscription-${s.name}`}>
                  <h3>{s.name}</h3>
                  <dl className="counts">
                    <div className="count-pair">
                      <dt>services</dt>
                      <dd>{svcCount}</dd>
                    </div>
                    <div className="count-pair">
                      <dt>VMs</dt>
                      <dd>{mine.length}</dd>
                    </div>
                    {STATES.map((st) => (
                      <div key={st} className="count-pair">
                        <dt className={`state-text-${st}`}>{st}</dt>
                        <dd>{mine.filter((v) => v.state === st).length}</dd>
                      </div>
                    ))}
                  </dl>
                </div>
              );
            })}
            {subs.data.length === 0 ? (
              <p className="muted">No subscription yet: vipdip apply -f topology.yaml</p>
            ) : null}
          </div>
        ) : null}
      </Section>

      <Section title="Cloud services">
        {services.error ? <ProblemText problem={services.error} what="cloud services" /> : null}
        {vms.error ? <ProblemText problem={vms.error} what="VMs" /> : null}
        {services.data === undefined && services.loading ? <Loading what="cloud services" /> : null}
        {services.data !== undefined ? (
          <div className="table-wrap">
            <table className="services stack">
              <caption className="visually-hidden">
                Cloud services with their VIPs and their VMs' DIPs
              </caption>
              <thead>
                <tr>
                  <th scope="col">Service</th>
                  <th scope="col">Subscription</th>
                  <th scope="col">VIP</th>
                  <th scope="col">DNS name</th>
                  <th scope="col">VMs and DIPs</th>
                </tr>
              </thead>
              <tbody>
                {services.data.map((s) => (
                  <tr key={s.name} data-testid={`service-row-${s.name}`}>
                    <th scope="row">
                      <Link href={href('service', { service: s.name })}>{s.name}</Link>
                    </th>
                    <td data-label="Subscription">{s.subscription}</td>
                    <td data-label="VIP">
                      {s.vip !== null ? (
                        <Address value={s.vip} testId={`vip-${s.name}`} />
                      ) : (
                        <NoVip testId={`vip-${s.name}`} />
                      )}
                      {s.reservedIp !== null ? (
                        <div className="muted small">reserved IP {s.reservedIp}</div>
                      ) : null}
                    </td>
                    <td data-label="DNS name">
                      <code className="small">{s.dnsName}</code>
                    </td>
                    <td data-label="VMs">
                      <ul className="vm-chips">
                        {vmsOf(s.name).map((v) => (
                          <li
                            key={v.name}
                            className={`chip state-${v.state}`}
                            data-testid={`chip-${s.name}-${v.name}`}
                          >
                            <Link href={href('vm', { service: s.name, vm: v.name })}>{v.name}</Link>{' '}
                            {v.dip !== null ? (
                              <code data-testid={`dip-${s.name}-${v.name}`}>{v.dip}</code>
                            ) : (
                              <span className="muted" data-testid={`dip-${s.name}-${v.name}`}>
                                no DIP
                              </span>
                            )}
                            <span className="visually-hidden"> ({v.state})</span>
                          </li>
                        ))}
                      </ul>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {services.data.length === 0 ? <p className="muted">No cloud service yet.</p> : null}
          </div>
        ) : null}
      </Section>

      <Section title="Address utilisation">
        <div className="usage-grid">
          {operator ? (
            <div>
              <h3>Public pools</h3>
              {pools.error ? <ProblemText problem={pools.error} what="public pools" /> : null}
              {(pools.data ?? []).map((p) => (
                <Usage key={p.cidr} label={<code>{p.cidr}</code>} bound={p.bound} usable={p.usable} />
              ))}
            </div>
          ) : null}
          <div>
            <h3>Subnets</h3>
            {vnets.error ? <ProblemText problem={vnets.error} what="virtual networks" /> : null}
            {(vnets.data ?? []).flatMap((n) =>
              n.subnets.map((s) => (
                <Usage
                  key={`${n.subscription}/${n.name}/${s.name}`}
                  label={
                    <>
                      <Link href={href('vnet', { subscription: n.subscription, vnet: n.name })}>
                        {n.name}/{s.name}
                      </Link>{' '}
                      <code className="small">{s.cidr}</code>
                      {operator ? <span className="muted small"> {n.subscription}</span> : null}
                    </>
                  }
                  bound={s.bound}
                  usable={s.usable}
                />
              )),
            )}
          </div>
        </div>
      </Section>

      {operator ? (
        <Section title="Hosts">
          {hosts.error ? <ProblemText problem={hosts.error} what="hosts" /> : null}
          {hosts.data !== undefined ? <HostsTable hosts={hosts.data} /> : null}
        </Section>
      ) : null}
    </>
  );
}

function HostsTable({ hosts }: { hosts: Host[] }) {
  const session = useSession();
  const maintain = async (h: Host) => {
    const ok = await confirm({
      title: `Maintenance of ${h.name}?`,
      body: (
        <p>
          The {h.vms} VM{h.vms === 1 ? '' : 's'} on {h.name} (rack {h.rack}) move to other hosts; their DIPs
          are redrawn unless static or their network keeps DIPs on moves.
        </p>
      ),
      confirmLabel: 'Start maintenance',
    });
    if (!ok) return;
    await session.act(
      `Maintenance of ${h.name}`,
      () => session.client.send('POST', paths.hostMaintenance(h.name)),
      {
        exact: [],
        prefix: ['/v1/'],
      },
    );
  };
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Host</th>
            <th scope="col">Rack</th>
            <th scope="col">VMs</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {hosts.map((h) => (
            <tr key={h.name}>
              <th scope="row">{h.name}</th>
              <td>{h.rack}</td>
              <td>{h.vms}</td>
              <td>
                <button
                  type="button"
                  onClick={() => void maintain(h)}
                  aria-label={`Maintenance of ${h.name}`}
                >
                  Maintenance
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
