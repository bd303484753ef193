export * from './errors.ts';
export * from './ip.ts';
export * from './random.ts';
export * from './clock.ts';
export * from './sse.ts';
