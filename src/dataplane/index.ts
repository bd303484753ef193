export * from './driver.ts';
export { NoneDriver } from './none.ts';
export { LocalDriver, LOOPBACK_BLOCK, checkLoopbackPlan, type LocalDriverOptions } from './local.ts';
export { createDriver, type DriverOptions } from './create.ts';
export { NetnsDriver, netnsUnsupported, type NetnsDriverOptions } from './netns/driver.ts';
export { agentWorldPrefix, worldPrefix } from './netns/world.ts';
export { setnsSyscall } from './netns/vm-links.ts';
