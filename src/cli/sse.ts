/** The event-stream parser lives in core, shared with the standalone agent; the CLI uses it from here. */
export { SseParser, type SseMessage } from '../core/sse.ts';
