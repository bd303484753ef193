/**
 * The kinds of chaos weather: part of the API's vocabulary (the keys of a run's rates and counts,
 * core/api-shapes.ts) and of the runner's (chaos/). Here, apart from the schemas, so that the chaos
 * domain and the CLI can use the list without loading TypeBox.
 */

/** The kinds of weather, in the order they are listed and drawn. */
export const CHAOS_KINDS = ['maintenance', 'redeploy', 'deallocate', 'vip', 'crash'] as const;
export type ChaosKind = (typeof CHAOS_KINDS)[number];
