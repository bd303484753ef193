/**
 * The shapes users, scripts and the API see (SPEC.md §7): names and dotted-quad text, never ids.
 * Each is the type of its schema in core/api-shapes.ts, so the lifecycle cannot build a view with a
 * field the API would not send: the typecheck refuses it.
 */
import type * as S from '../core/api-shapes.ts';

export type VmView = S.Vm;
/**
 * A workload image as the operator sees it: a built-in (command null: it runs through vipdip
 * itself) or the operator's. A tenant is shown less of it (api/routes/images.ts).
 */
export type ImageView = Required<S.Image>;
export type ServiceView = S.Service;
export type SubnetView = S.Subnet;
export type VnetView = S.Vnet;
export type ReservedIpView = S.ReservedIp;
export type PoolView = S.Pool;
export type HostView = S.Host;
export type SubscriptionView = S.Subscription;
export type EventView = S.Event;
