/**
 * The routes' schemas. The shapes themselves are defined once, in core/api-shapes.ts, where the
 * lifecycle, the CLI, the agent and the dashboard take their types from too.
 */
export * from '../core/api-shapes.ts';
