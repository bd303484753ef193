/** The dashboard's shell: sign-in, the signed-in session with its live stream, navigation, pages. */
import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import type { EventPage, Whoami } from '../../core/api-shapes.ts';
import { paths } from '../lib/paths.ts';
import { refreshFor, refreshForHealth } from '../lib/refresh.ts';
import { href } from '../lib/routes.ts';
import { makeClient, type ApiProblem } from './api.ts';
import { ApiCache } from './cache.ts';
import { ProblemText } from './components/bits.tsx';
import { ConfirmHost } from './components/confirm.tsx';
import { ProblemsRegion } from './components/problems.tsx';
import { LiveStream, type LiveStatus } from './live.ts';
import { EventsPage } from './pages/events.tsx';
import { OverviewPage } from './pages/overview.tsx';
import { ChaosBanner } from './components/chaos.tsx';
import { ServicePage } from './pages/service.tsx';
import { VmPage } from './pages/vm.tsx';
import { VnetPage } from './pages/vnet.tsx';
import { Link, usePathname, useRoute } from './router.tsx';
import { SessionContext, TOKEN_KEY, asProblem, useSession, type Session } from './session.ts';
import { EventBus, Problems, Watched, useWatched } from './store.ts';

interface SignedIn {
  token: string;
  whoami: Whoami;
  /** The newest event when signing in: the stream starts after it. */
  head: number;
}

type AppState =
  { kind: 'checking' } | { kind: 'signed-out'; problem?: ApiProblem } | ({ kind: 'signed-in' } & SignedIn);

/** Checks a token: who it is, and where the event log stands (read before any page, so no change is missed). */
async function verify(token: string): Promise<SignedIn> {
  const client = makeClient(token, () => undefined);
  const whoami = await client.get<Whoami>(paths.whoami);
  const page = await client.get<EventPage>(`${paths.events}?order=desc&limit=1`);
  return { token, whoami, head: page.events[0]?.seq ?? 0 };
}

function readToken(): string | null {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function App() {
  const [state, setState] = useState<AppState>(() =>
    readToken() === null ? { kind: 'signed-out' } : { kind: 'checking' },
  );

  useEffect(() => {
    const token = readToken();
    if (token === null) return;
    verify(token)
      .then((s) => setState({ kind: 'signed-in', ...s }))
      .catch((e: unknown) => {
        window.sessionStorage.removeItem(TOKEN_KEY);
        setState({ kind: 'signed-out', problem: asProblem(e) });
      });
  }, []);

  const signOut = useCallback((problem?: ApiProblem) => {
    window.sessionStorage.removeItem(TOKEN_KEY);
    setState(problem !== undefined ? { kind: 'signed-out', problem } : { kind: 'signed-out' });
  }, []);

  if (state.kind === 'checking')
    return (
      <p className="muted center" role="status">
        Signing in…
      </p>
    );
  if (state.kind === 'signed-out')
    return (
      <SignIn
        problem={state.problem}
        onSignedIn={(s) => {
          window.sessionStorage.setItem(TOKEN_KEY, s.token);
          setState({ kind: 'signed-in', ...s });
        }}
      />
    );
  return <SignedInApp key={state.token} signedIn={state} onSignOut={signOut} />;
}

function SignIn({
  problem,
  onSignedIn,
}: {
  problem: ApiProblem | undefined;
  onSignedIn: (s: SignedIn) => void;
}) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiProblem | undefined>(problem);
  useEffect(() => {
    document.title = 'Sign in — vipdip';
  }, []);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const t = token.trim();
    if (t === '') return;
    setBusy(true);
    setError(undefined);
    verify(t)
      .then(onSignedIn)
      .catch((err: unknown) => {
        setBusy(false);
        setError(asProblem(err));
      });
  };
  return (
    <main className="signin" id="main">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">vipdip</h1>
        <p>
          Sign in with an API token: the operator&apos;s sees every subscription, a subscription&apos;s only
          its own.
        </p>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          required
          value={token}
          onChange={(e) => setToken(e.target.value)}
          aria-describedby="token-help"
          autoFocus
        />
        <p id="token-help" className="muted small">
          The operator token is in <code>.vipdip/operator.token</code>;{' '}
          <code>vipdip token create NAME -s SUBSCRIPTION</code> makes a subscription&apos;s. It is kept in
          this tab only, until you sign out or close it.
        </p>
        {error ? <ProblemText problem={error} what="Sign-in" /> : null}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

function SignedInApp({ signedIn, onSignOut }: { signedIn: SignedIn; onSignOut: (p?: ApiProblem) => void }) {
  const session = useMemo<Session>(() => {
    const client = makeClient(signedIn.token, (p) => onSignOut(p));
    const cache = new ApiCache(client);
    const live = new Watched<LiveStatus>('connecting');
    const s: Session = {
      whoami: signedIn.whoami,
      operator: signedIn.whoami.kind === 'operator',
      client,
      cache,
      bus: new EventBus(),
      problems: new Problems(),
      live,
      signOut: () => onSignOut(),
      act: async (label, run, touched) => {
        try {
          await run();
          // The stream brings the change; when it is down, fetch what the action touched now.
          if (touched !== undefined && live.get() !== 'live') cache.refreshNow(touched);
          return true;
        } catch (e) {
          s.problems.add(label, asProblem(e));
          return false;
        }
      },
    };
    return s;
  }, [signedIn, onSignOut]);

  useEffect(() => {
    const stream = new LiveStream(signedIn.token, signedIn.head, {
      onEvent: (e) => {
        session.cache.refreshSoon(refreshFor(e));
        session.bus.emitEvent(e);
      },
      onHealth: (h) => {
        session.cache.refreshSoon(refreshForHealth(h));
        session.bus.emitHealth(h);
      },
      onStatus: (st) => session.live.set(st),
      onUnauthorized: () => onSignOut(),
    });
    stream.start();
    return () => {
      stream.stop();
      session.cache.dispose();
    };
  }, [session, signedIn, onSignOut]);

  return (
    <SessionContext.Provider value={session}>
      <Shell />
    </SessionContext.Provider>
  );
}

function Shell() {
  const session = useSession();
  const pathname = usePathname();
  const route = useRoute();
  const first = useRef(true);

  useEffect(() => {
    const names: Record<string, string> = {
      overview: 'Overview',
      service: `Service ${route?.name === 'service' ? route.params.service : ''}`,
      vm: route?.name === 'vm' ? `VM ${route.params.service}/${route.params.vm}` : 'VM',
      vnet: route?.name === 'vnet' ? `Virtual network ${route.params.vnet}` : 'Virtual network',
      events: 'Events',
    };
    document.title = `${route === null ? 'Not found' : names[route.name]} — vipdip`;
    // After a navigation (not the first load), focus moves to the new page for keyboard and screen reader users.
    if (first.current) first.current = false;
    else document.getElementById('main')?.focus();
  }, [pathname, route]);

  const current = (path: string) => (pathname === path ? ('page' as const) : undefined);

  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link href={href('overview')} className="brand">
          vipdip
        </Link>
        <nav aria-label="Main">
          <ul>
            <li>
              <Link href={href('overview')} aria-current={current(href('overview'))}>
                Overview
              </Link>
            </li>
            <li>
              <Link href={href('events')} aria-current={current(href('events'))}>
                Events
              </Link>
            </li>
          </ul>
        </nav>
        <div className="who">
          <LiveIndicator />
          <span className="identity" data-testid="identity">
            {session.operator ? 'operator' : `subscription ${session.whoami.subscription ?? ''}`}
          </span>
          <button type="button" onClick={() => session.signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <ProblemsRegion />
      <ChaosBanner />
      <main id="main" tabIndex={-1}>
        <Page />
      </main>
      <ConfirmHost />
    </>
  );
}

function Page() {
  const route = useRoute();
  if (route === null)
    return (
      <>
        <h1 tabIndex={-1}>Not found</h1>
        <p>
          This page does not exist. <Link href={href('overview')}>Back to the overview</Link>.
        </p>
      </>
    );
  switch (route.name) {
    case 'overview':
      return <OverviewPage />;
    case 'service':
      return <ServicePage key={route.params.service} service={route.params.service} />;
    case 'vm':
      return (
        <VmPage
          key={`${route.params.service}/${route.params.vm}`}
          service={route.params.service}
          vm={route.params.vm}
        />
      );
    case 'vnet':
      return (
        <VnetPage
          key={`${route.params.subscription}/${route.params.vnet}`}
          subscription={route.params.subscription}
          vnet={route.params.vnet}
        />
      );
    case 'events':
      return <EventsPage />;
  }
}

function LiveIndicator() {
  const { live } = useSession();
  const status = useWatched(live);
  const text: Record<LiveStatus, string> = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    stopped: 'not live',
  };
  return (
    <span className={`live live-${status}`} role="status" data-testid="live-status" data-status={status}>
      <span className="dot" aria-hidden="true" /> {text[status]}
    </span>
  );
}
