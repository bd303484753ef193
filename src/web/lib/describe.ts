/** Events in words, for the address history and the timeline. */
import type { Event as ApiEvent } from '../../core/api-shapes.ts';
import { addressField, type AddressField } from '../../lifecycle/events.ts';

/** What each address is called (the catalog says which events change which address). */
export const ADDRESS_LABELS: Readonly<Record<AddressField, string>> = {
  dip: 'DIP',
  ilpip: 'ILPIP',
  vip: 'VIP',
  address: 'reserved IP',
};

export function isAddressChange(e: ApiEvent): boolean {
  return addressField(e.type) !== undefined;
}

const show = (v: unknown): string =>
  v === null || v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v);

export interface Change {
  /** What changed: "DIP", "VIP", "state"… */
  what: string;
  from: string;
  to: string;
}

/** The change an event records, as "what: from → to" parts; null when it records none. */
export function changeOf(e: ApiEvent): Change | null {
  const field = addressField(e.type);
  if (field !== undefined) {
    return { what: ADDRESS_LABELS[field], from: show(e.old?.[field]), to: show(e.new?.[field]) };
  }
  const keys = [...new Set([...Object.keys(e.old ?? {}), ...Object.keys(e.new ?? {})])];
  if (keys.length === 1) {
    const k = keys[0]!;
    return { what: k, from: show(e.old?.[k]), to: show(e.new?.[k]) };
  }
  if (keys.length === 0) return null;
  const fields = (o: Record<string, unknown> | null) =>
    o === null
      ? '—'
      : Object.entries(o)
          .map(([k, v]) => `${k} ${show(v)}`)
          .join(', ');
  const verb = e.type.split('.').at(-1) ?? e.type;
  return { what: verb, from: fields(e.old), to: fields(e.new) };
}

export function describeChange(e: ApiEvent): string {
  const c = changeOf(e);
  return c === null ? e.type : `${c.what} ${c.from} → ${c.to}`;
}
