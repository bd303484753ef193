/** Small shared stores: the live events bus, the problems shown to the user, the live status. */
import { useSyncExternalStore } from 'react';
import type { Event as ApiEvent, HealthChange } from '../../core/api-shapes.ts';
import type { ApiProblem } from './api.ts';

/** A value that components can watch. */
export class Watched<T> {
  private readonly listeners = new Set<() => void>();
  constructor(private value: T) {}
  get = (): T => this.value;
  set(v: T): void {
    this.value = v;
    for (const l of [...this.listeners]) l();
  }
  subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };
}

export function useWatched<T>(w: Watched<T>): T {
  return useSyncExternalStore(w.subscribe, w.get);
}

/** The events and health changes of the live stream, for the pages that list them as they come. */
export class EventBus {
  private readonly events = new Set<(e: ApiEvent) => void>();
  private readonly health = new Set<(h: HealthChange) => void>();
  onEvent(fn: (e: ApiEvent) => void): () => void {
    this.events.add(fn);
    return () => this.events.delete(fn);
  }
  onHealth(fn: (h: HealthChange) => void): () => void {
    this.health.add(fn);
    return () => this.health.delete(fn);
  }
  emitEvent(e: ApiEvent): void {
    for (const fn of [...this.events]) fn(e);
  }
  emitHealth(h: HealthChange): void {
    for (const fn of [...this.health]) fn(h);
  }
}

export interface ShownProblem {
  id: number;
  /** What the user was doing: "Start shop/web4". */
  action: string;
  problem: ApiProblem;
}

/** Problems from actions: shown until dismissed, never swallowed. */
export class Problems extends Watched<ShownProblem[]> {
  private next = 1;
  constructor() {
    super([]);
  }
  add(action: string, problem: ApiProblem): void {
    this.set([...this.get(), { id: this.next++, action, problem }]);
  }
  dismiss(id: number): void {
    this.set(this.get().filter((p) => p.id !== id));
  }
}
