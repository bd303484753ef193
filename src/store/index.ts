export * from './store.ts';
export { SqliteStore, type SqliteStoreOptions } from './sqlite/sqlite-store.ts';
export type { Database } from './schema.ts';
export { PostgresStore, type PostgresStoreOptions } from './postgres/postgres-store.ts';
