/**
 * The dashboard's client routes: one table shared by the browser's router and the server, which
 * answers each of these paths with the page (so a reload or a pasted link works) and nothing else.
 * Patterns use find-my-way's `:param` syntax; a param is one path segment.
 */
export const CLIENT_ROUTES = {
  overview: '/',
  service: '/services/:service',
  vm: '/services/:service/vms/:vm',
  vnet: '/subscriptions/:subscription/vnets/:vnet',
  events: '/events',
} as const;

export type RouteName = keyof typeof CLIENT_ROUTES;

/** The params a route's pattern names, e.g. `{ service: string; vm: string }` for `vm`. */
type ParamsOf<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? { [K in Name]: string } & ParamsOf<`/${Rest}`>
  : P extends `${string}:${infer Name}`
    ? { [K in Name]: string }
    : Record<never, never>;

export type RouteParams<N extends RouteName> = ParamsOf<(typeof CLIENT_ROUTES)[N]>;

export type Route = { [N in RouteName]: { name: N; params: RouteParams<N> } }[RouteName];

/** The path of a route with its params filled in (each one percent-encoded). */
export function href<N extends RouteName>(
  name: N,
  ...args: keyof RouteParams<N> extends never ? [] : [RouteParams<N>]
): string {
  const params = (args[0] ?? {}) as Record<string, string>;
  return CLIENT_ROUTES[name].replace(/:([A-Za-z]+)/g, (_m, k: string) => {
    const v = params[k];
    if (v === undefined) throw new Error(`route ${name} needs ${k}`);
    return encodeURIComponent(v);
  });
}

/** The route a pathname shows, or null when it is none of them. */
export function matchRoute(pathname: string): Route | null {
  const segs = split(pathname);
  if (segs === null) return null;
  for (const [name, pattern] of Object.entries(CLIENT_ROUTES) as [RouteName, string][]) {
    const want = split(pattern)!;
    if (want.length !== segs.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < want.length && ok; i++) {
      const w = want[i]!;
      const s = segs[i]!;
      if (w.startsWith(':')) {
        if (s === '') ok = false;
        else params[w.slice(1)] = s;
      } else ok = w === s;
    }
    if (ok) return { name, params } as Route;
  }
  return null;
}

/** Decoded path segments; a trailing slash is ignored; null for a badly encoded path. */
function split(pathname: string): string[] | null {
  const trimmed = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  if (trimmed === '/') return [];
  try {
    return trimmed.slice(1).split('/').map(decodeURIComponent);
  } catch {
    return null;
  }
}
