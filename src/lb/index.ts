export {
  FLOW_HASH_SEED,
  PROTOCOL_NUMBER,
  flowHash,
  flowKey,
  murmur3,
  murmur3Text,
  type Flow,
} from './hash.ts';
export {
  MAGLEV_TABLE_SIZE_DEFAULT,
  buildMaglevTable,
  checkTableSize,
  isPrime,
  maglevPermutation,
} from './maglev.ts';
export { PickerSnapshot, type Backend, type PickerInput } from './picker.ts';
export { compileAcl, type AclCheck } from './acl.ts';
