export * from './spec.ts';
export * from './schedule.ts';
export * from './runner.ts';
export * from './probe.ts';
