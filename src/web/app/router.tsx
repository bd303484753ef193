/** History-API routing over the shared route table (lib/routes.ts), with real links. */
import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent, type ReactNode } from 'react';
import { matchRoute, type Route } from '../lib/routes.ts';

const NAVIGATE = 'vipdip:navigate';

function subscribe(l: () => void): () => void {
  window.addEventListener('popstate', l);
  window.addEventListener(NAVIGATE, l);
  return () => {
    window.removeEventListener('popstate', l);
    window.removeEventListener(NAVIGATE, l);
  };
}

const currentPath = () => window.location.pathname;

export function navigate(path: string): void {
  if (path === currentPath()) return;
  window.history.pushState(null, '', path);
  window.dispatchEvent(new Event(NAVIGATE));
  window.scrollTo(0, 0);
}

export function usePathname(): string {
  return useSyncExternalStore(subscribe, currentPath);
}

export function useRoute(): Route | null {
  return matchRoute(usePathname());
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & { href: string; children: ReactNode };

/** An ordinary link (open in a new tab works) that navigates in place on a plain click. */
export function Link({ href, children, onClick, ...rest }: LinkProps) {
  const go = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={go} {...rest}>
      {children}
    </a>
  );
}
