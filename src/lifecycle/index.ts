export * from './cloud.ts';
export * from './transitions.ts';
export * from './endpoints.ts';
export * from './views.ts';
export { checkDnsLabel, checkName, checkSubscriptionName } from './names.ts';
export { AddressBook, poolScope, subnetScope, type BookChange, type BookTx } from './address-book.ts';
export { fsck, formatFinding, type Finding } from './fsck.ts';
export * from './dns-names.ts';
export * from './images.ts';
