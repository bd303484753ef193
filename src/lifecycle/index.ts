export * from './cloud.ts';
export * from './transitions.ts';
export * from './endpoints.ts';
export * from './views.ts';
export { checkDnsLabel, checkName, checkSubscriptionName } from './names.ts';
export {
  AddressBook,
  formatScope,
  parseScope,
  poolScope,
  subnetScope,
  type BookChange,
  type BookTx,
  type Scope,
} from './address-book.ts';
export * from './events.ts';
export { fsck, formatFinding, type Finding } from './fsck.ts';
export * from './dns-names.ts';
export * from './images.ts';
