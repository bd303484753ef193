export * from './address-range.ts';
export { FreeSet } from './free-set.ts';
