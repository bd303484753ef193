/**
 * A long-lived nft channel into one network namespace: one `nft -i` child kept open, fed one
 * transaction per line, so a small ruleset update costs a pipe write and the kernel's work instead of
 * a process start, a namespace entry and a cache fill (`nft -f` per update: ~10–70 ms on this machine
 * class, most of it not the kernel's).
 *
 * How a transaction is known to have finished, and whether it failed: `nft -i` runs each input line
 * as one transaction (the whole line or nothing) and reports errors on stderr. Each transaction line
 * is followed by a marker line that is a syntax error naming a fresh token (`vipdip_done_17`); nft
 * answers it on the same stderr, after the transaction's own errors, without touching the kernel.
 * What stderr says between two markers is the transaction's outcome: nothing (or no `Error:` line)
 * is success.
 *
 * Texts the interactive reader does not suit go through `nft -f -` instead: large ones (over
 * `largeBytes`, where reading one long line is slower than a fresh process reading a file) and ones
 * that are not one command per line (the whole-ruleset text with its `table { … }` blocks). A child
 * that dies is started again by the next transaction; a transaction it died in the middle of is
 * retried once with `nft -f -` (an update that had gone in and is refused the second time is
 * reported as failed, and the driver then loads the whole ruleset).
 *
 * One channel per namespace: construct it with the namespace's name, `close()` it before the
 * namespace is deleted (a process inside keeps the namespace alive).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { inNetns, run } from './world.ts';

export interface NftChannelOptions {
  /** Texts longer than this (bytes) go through `nft -f -`; 16 KiB by default. */
  largeBytes?: number;
  /** How long a transaction may take before the child is killed and the transaction failed. */
  timeoutMs?: number;
  /** `false`: every transaction through `nft -f -` (the old path; for side-by-side benchmarks). */
  interactive?: boolean;
}

interface Waiter {
  readonly marker: string;
  readonly lines: string[];
  resolve(errors: string[]): void;
  reject(e: Error): void;
}

const DEFAULT_LARGE = 16 * 1024;
const DEFAULT_TIMEOUT = 60_000;

/** True when every line of `text` is a whole command (braces balanced, no comment), so lines may be joined. */
export function oneCommandPerLine(text: string): boolean {
  for (const line of text.split('\n')) {
    if (line.includes('#')) return false;
    let depth = 0;
    for (const ch of line) {
      if (ch === '{') depth++;
      else if (ch === '}' && --depth < 0) return false;
    }
    if (depth !== 0) return false;
  }
  return true;
}

export class NftChannel {
  private child: ChildProcess | undefined;
  private waiter: Waiter | undefined;
  private stderrRest = '';
  /** Drop the caret line nft prints under a marker's echo. */
  private skipCaret = false;
  private queue: Promise<unknown> = Promise.resolve();
  private seq = 0;
  private closed = false;
  private readonly largeBytes: number;
  private readonly timeoutMs: number;
  private readonly interactive: boolean;
  /** Transactions by path, and children started: for tests and the benchmark. */
  readonly stats = { interactive: 0, file: 0, spawned: 0, retried: 0 };

  constructor(
    readonly netns: string,
    opts: NftChannelOptions = {},
  ) {
    this.largeBytes = opts.largeBytes ?? DEFAULT_LARGE;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT;
    this.interactive = opts.interactive ?? true;
  }

  /** The child's pid, while one runs. */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /**
   * Applies `text` (nft commands) as one transaction in the namespace: resolves when the kernel has
   * it, rejects with nft's error when it was refused (and then nothing of it is in force).
   * Transactions run one at a time, in call order.
   */
  apply(text: string): Promise<void> {
    const r = this.queue.then(() => this.applyNow(text));
    this.queue = r.catch(() => {});
    return r;
  }

  private async applyNow(text: string): Promise<void> {
    if (this.closed) throw new Error(`nft channel for ${this.netns} is closed`);
    const body = text.trim();
    if (body === '') return;
    if (!this.interactive || body.length > this.largeBytes || !oneCommandPerLine(body)) {
      this.stats.file++;
      await this.file(text);
      return;
    }
    this.stats.interactive++;
    const line = body
      .split('\n')
      .filter((l) => l.trim() !== '')
      .join('; ');
    let errors: string[];
    try {
      errors = await this.send(line);
    } catch {
      // The child died (or hung) in the middle: whether the line went in is unknown. Once more with
      // a fresh process; a refusal now is reported, and the caller reloads the whole ruleset.
      this.stats.retried++;
      await this.file(text);
      return;
    }
    if (errors.some((l) => l.startsWith('Error'))) {
      throw new Error(`nft (in ${this.netns}): ${errors.slice(0, 3).join(' / ')}`);
    }
  }

  private file(text: string): Promise<string> {
    return run(...inNetns(this.netns, ['nft', '-f', '-']), text);
  }

  private ensureChild(): ChildProcess {
    if (this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null)
      return this.child;
    const [cmd, args] = inNetns(this.netns, ['nft', '-i']);
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.stats.spawned++;
    this.child = child;
    this.stderrRest = '';
    this.skipCaret = false;
    child.stdout.resume(); // nothing we ask prints; keep the pipe from filling regardless
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (this.child === child) this.onStderr(chunk);
    });
    child.stdin.on('error', () => {}); // a dead child: the exit handler fails the waiter
    const gone = () => {
      if (this.child !== child) return;
      this.child = undefined;
      const w = this.waiter;
      this.waiter = undefined;
      w?.reject(new Error(`nft -i in ${this.netns} exited`));
    };
    child.on('close', gone);
    child.on('error', gone);
    return child;
  }

  private onStderr(chunk: string): void {
    const text = this.stderrRest + chunk;
    const lines = text.split('\n');
    this.stderrRest = lines.pop()!;
    for (const line of lines) {
      if (this.skipCaret) {
        this.skipCaret = false;
        if (/^\s*\^+\s*$/.test(line)) continue;
      }
      const w = this.waiter;
      if (w === undefined) continue;
      if (line === w.marker) {
        // The line before the echo is the marker's own "Error: syntax error …".
        w.lines.pop();
        this.skipCaret = true;
        this.waiter = undefined;
        w.resolve(w.lines);
      } else w.lines.push(line);
    }
  }

  private send(line: string): Promise<string[]> {
    const child = this.ensureChild();
    const marker = `vipdip_done_${++this.seq}`;
    return new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waiter?.marker !== marker) return;
        this.waiter = undefined;
        reject(new Error(`nft -i in ${this.netns}: no answer within ${this.timeoutMs} ms`));
        child.kill('SIGKILL');
      }, this.timeoutMs);
      timer.unref();
      this.waiter = {
        marker,
        lines: [],
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      child.stdin!.write(`${line}\n${marker}\n`);
    });
  }

  /** Ends the child (after the transactions already asked for) and waits for it to be gone. */
  async close(): Promise<void> {
    await this.queue;
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.stdin!.end();
    });
  }
}
