/** A virtual network: its subnets, each with a map of its used, free and reserved addresses. */
import type { Vm, Vnet } from '../../../core/api-shapes.ts';
import { addressMap, type AddressCell } from '../../lib/address-map.ts';
import { paths } from '../../lib/paths.ts';
import { href } from '../../lib/routes.ts';
import { useApi } from '../cache.ts';
import { Loading, ProblemText, Section, StateBadge, Usage } from '../components/bits.tsx';
import { Address } from '../components/copy.tsx';
import { Link } from '../router.tsx';
import { useSession } from '../session.ts';

export function VnetPage({ subscription, vnet: name }: { subscription: string; vnet: string }) {
  const { cache } = useSession();
  const vnet = useApi<Vnet>(cache, paths.vnet(subscription, name));
  const vms = useApi<Vm[]>(cache, paths.vms);
  const title = `Virtual network ${name}`;
  if (vnet.error)
    return (
      <>
        <h1 tabIndex={-1}>{title}</h1>
        <ProblemText problem={vnet.error} what={title} />
      </>
    );
  if (vnet.data === undefined) return <Loading what={title} />;
  const n = vnet.data;
  const mine = (vms.data ?? []).filter((v) => v.subscription === n.subscription && v.vnet === n.name);
  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link href={href('overview')}>Overview</Link> / <span aria-current="page">{n.name}</span>
      </nav>
      <h1 tabIndex={-1}>{title}</h1>
      <dl className="facts">
        <div>
          <dt>Subscription</dt>
          <dd>{n.subscription}</dd>
        </div>
        <div>
          <dt>Address space</dt>
          <dd>
            {n.addressSpace.map((c) => (
              <code key={c}>{c} </code>
            ))}
          </dd>
        </div>
        <div>
          <dt>DIP policy</dt>
          <dd>{n.dipPolicy === 'random' ? 'random (uniform among free addresses)' : n.dipPolicy}</dd>
        </div>
        <div>
          <dt>On host moves</dt>
          <dd>{n.movePolicy === 'redraw' ? 'DIPs are redrawn' : 'DIPs are kept'}</dd>
        </div>
      </dl>
      {vms.error ? <ProblemText problem={vms.error} what="VMs" /> : null}
      {n.subnets.map((s) => {
        const inSubnet = mine.filter((v) => v.subnet === s.name);
        const map = addressMap(
          s.cidr,
          inSubnet
            .filter((v) => v.dip !== null)
            .map((v) => ({ address: v.dip!, owner: `${v.service}/${v.name}` })),
        );
        return (
          <Section key={s.name} title={`Subnet ${s.name} ${s.cidr}`} id={`subnet-${s.name}`}>
            <Usage label="Bound DIPs" bound={s.bound} usable={s.usable} />
            <div className="map-legend" aria-hidden="true">
              <span className="cell used" /> used <span className="cell free" /> free{' '}
              <span className="cell reserved" /> reserved
              {map.perCell > 1 ? (
                <>
                  {' '}
                  <span className="cell mixed" /> partly used · {map.perCell} addresses per cell
                </>
              ) : null}
            </div>
            <div
              className="address-map"
              role="img"
              data-testid={`map-${s.name}`}
              aria-label={`Address map of ${s.name}: ${map.used} used, ${map.free} free, ${map.reserved} reserved of ${map.size} addresses`}
            >
              {map.cells.map((c) => (
                <span
                  key={c.first}
                  className={`cell ${c.kind}`}
                  title={cellTitle(c)}
                  data-address={c.first}
                />
              ))}
            </div>
            {map.outside.length > 0 ? (
              <p className="problem">Bound outside the subnet: {map.outside.join(', ')}</p>
            ) : null}
            <h3 className="small-heading">Addresses in use</h3>
            {inSubnet.length === 0 ? (
              <p className="muted">No VM in this subnet.</p>
            ) : (
              <div className="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">DIP</th>
                      <th scope="col">VM</th>
                      <th scope="col">State</th>
                      <th scope="col">Static</th>
                    </tr>
                  </thead>
                  <tbody>
                    {[...inSubnet]
                      .sort((a, b) => ipOrder(a.dip) - ipOrder(b.dip))
                      .map((v) => (
                        <tr key={`${v.service}/${v.name}`}>
                          <td>
                            <Address value={v.dip} none="no DIP (deallocated)" />
                          </td>
                          <td>
                            <Link href={href('vm', { service: v.service, vm: v.name })}>
                              {v.service}/{v.name}
                            </Link>
                          </td>
                          <td>
                            <StateBadge state={v.state} />
                          </td>
                          <td>{v.staticDip !== null ? 'static' : 'random'}</td>
                        </tr>
                      ))}
                  </tbody>
                </table>
              </div>
            )}
          </Section>
        );
      })}
    </>
  );
}

function cellTitle(c: AddressCell): string {
  const range = c.count === 1 ? c.first : `${c.first}–${c.last}`;
  if (c.kind === 'reserved') return `${range}: reserved`;
  if (c.owners.length > 0) return `${range}: ${c.owners.join(', ')}`;
  return `${range}: free`;
}

/** Deallocated VMs (no DIP) sort last. */
function ipOrder(ip: string | null): number {
  if (ip === null) return Number.MAX_SAFE_INTEGER;
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}
