/**
 * Where the driver contract suite's traffic runs for the netns driver: backends inside VM
 * namespaces of one VNet (10.204.0.0/16, gateway 10.204.0.1), clients in the internet namespace or
 * in a VM, VIPs from 198.18.0.0/16 on the world's loopback. Every address lives only inside the
 * namespaces of the driver's prefix, which the suite deletes by name when it ends, pass or fail.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { DesiredDataPlane, DesiredVm, NetnsDriver } from '../../src/dataplane/index.ts';
import { vmNamespace } from '../../src/dataplane/netns/world.ts';
import { inNamespace } from '../../src/agent/sandbox.ts';
import { clientIn } from './netns.ts';

/** The port every netns backend listens on (each has a DIP of its own). */
export const NETNS_BACKEND_PORT = 8000;
/** The internet namespace's address: what a backend sees of an outside client. */
export const NETNS_OUTSIDE_CLIENT = '198.18.255.2';
const VNET = { key: 'contoso/ct-net', subscription: 'contoso', name: 'ct-net', subnets: ['10.204.0.0/16'] };

export interface NetnsBackend {
  id: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

export interface Held {
  /** The backend that answered the hello. */
  id: string;
  roundTrip(line: string): Promise<string>;
  /** Ends the flow. */
  close(): void;
}

/** The VMs (by DIP) the world holds, merged into every desired state the suite reconciles. */
export class NetnsPlace {
  private readonly vms = new Map<string, DesiredVm>();
  private last: DesiredDataPlane = { endpoints: [], snat: [] };
  private readonly children = new Set<ChildProcess>();

  constructor(private readonly driver: NetnsDriver) {}

  /** VM name of a DIP: `h10-204-11-11`. */
  private vmOf = (dip: string) => `h${dip.replace(/\./g, '-')}`;

  ns(dip: string): string {
    return vmNamespace(this.driver.names.prefix, `ct/${this.vmOf(dip)}`);
  }

  reconcile(d: DesiredDataPlane) {
    this.last = d;
    return this.driver.reconcile({ ...d, vms: [...this.vms.values()], vnets: [VNET] });
  }

  /** A VM with this DIP (made now if new), keeping the endpoints of the last reconcile. */
  async vm(dip: string): Promise<string> {
    if (!this.vms.has(dip)) {
      const vm = this.vmOf(dip);
      this.vms.set(dip, {
        key: `contoso/ct/${vm}`,
        subscription: 'contoso',
        service: 'ct',
        vm,
        vnet: VNET.key,
        cidr: VNET.subnets[0]!,
        dip,
      });
      const r = await this.reconcile(this.last);
      if (r.failed.length > 0) throw new Error(`VM ${dip}: ${JSON.stringify(r.failed)}`);
    }
    return this.ns(dip);
  }

  /** test/fixtures/netns-backend.mjs in the VM of `dip`: says `ID CLIENT` and echoes (TCP), answers `ID CLIENT` (UDP). */
  async backend(id: string, dip: string): Promise<NetnsBackend> {
    const ns = await this.vm(dip);
    const cmd = inNamespace(
      ns,
      {
        command: process.execPath,
        args: ['test/fixtures/netns-backend.mjs', id, dip, String(NETNS_BACKEND_PORT)],
      },
      undefined,
    );
    const c = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'pipe', 'inherit'] });
    this.children.add(c);
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: c.stdout }).once('line', () => resolve());
      c.once('exit', (code) => reject(new Error(`backend ${id} exited with ${code}`)));
    });
    return {
      id,
      host: dip,
      port: NETNS_BACKEND_PORT,
      close: async () => {
        if (c.exitCode !== null) return;
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await gone;
        this.children.delete(c);
      },
    };
  }

  /** One connection from the internet namespace, or from the VM of `fromDip`: the backend's hello line, or `error CODE`. */
  async hello(vip: string, port: number, fromDip?: string): Promise<string> {
    const ns = fromDip === undefined ? this.driver.names.internet : await this.vm(fromDip);
    return clientIn(ns, [`${vip} ${port}`])[0]!;
  }

  /** How a connection from the internet namespace ends: answered, refused (a reset answering the SYN), reset, or closed. */
  async outcome(vip: string, port: number): Promise<string> {
    const a = await this.hello(vip, port);
    if (a === 'error ECONNREFUSED') return 'refused';
    if (a === 'error ECONNRESET') return 'reset';
    if (a === 'error EOF') return 'closed';
    return a.startsWith('error ') ? a : 'answered';
  }

  /** One UDP datagram from the internet namespace: the first word of the answer (the backend's id). */
  udpAsk(vip: string, port: number): string {
    return clientIn(this.driver.names.internet, [`udp ${vip} ${port}`])[0]!.split(' ')[0]!;
  }

  /** A connection held open from the internet namespace (test/fixtures/netns-hold.mjs). */
  async hold(vip: string, port: number): Promise<Held> {
    const c = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.driver.names.internet,
        process.execPath,
        'test/fixtures/netns-hold.mjs',
        vip,
        String(port),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    this.children.add(c);
    const lines = createInterface({ input: c.stdout })[Symbol.asyncIterator]();
    const next = async () => String((await lines.next()).value);
    const id = (await next()).split(' ')[0]!;
    return {
      id,
      roundTrip: async (line) => {
        c.stdin.write(`${line}\n`);
        return next();
      },
      close: () => {
        c.stdin.end();
      },
    };
  }

  /** Kills every process this place started. */
  stop(): void {
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
    this.children.clear();
  }
}
