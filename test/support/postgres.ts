/**
 * The PostgreSQL of a test file: usePostgres() (at the top level of the file) gives a function that
 * starts the file's cluster on first use; the file's after() hook stops and removes it, also when a
 * test failed. If PostgreSQL cannot start, the tests that need it fail loudly rather than skip.
 */
import { after } from 'node:test';
import { startPostgres, type PgCluster, type PgClusterOptions } from './pg-cluster.ts';

export * from './pg-cluster.ts';

/**
 * Call at the top level of a test file: returns a function giving that file's cluster, started on
 * first use and destroyed in the file's after() hook (so also when a test failed).
 */
export function usePostgres(opts: PgClusterOptions = {}): () => Promise<PgCluster> {
  let started: Promise<PgCluster> | undefined;
  after(async () => {
    const c = await started?.catch(() => undefined);
    c?.destroy();
  });
  return () => (started ??= startPostgres(opts));
}
