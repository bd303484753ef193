export * from './topology.ts';
export * from './yaml-worker.ts';
