/** How the CLI names things on its command line. */
import { UsageError } from './errors.ts';

/** `SERVICE/VM` names one VM; `SERVICE` alone, all of that service's VMs. */
export function parseVmName(text: string): { service: string; vm?: string } {
  const parts = text.split('/');
  if (parts.length > 2 || parts.some((p) => p === '')) {
    throw new UsageError(`${JSON.stringify(text)} is not SERVICE/VM (or SERVICE for all its VMs)`);
  }
  return parts[1] === undefined ? { service: parts[0]! } : { service: parts[0]!, vm: parts[1] };
}

/** `SERVICE/VM`, where only one VM will do. */
export function parseVmRef(text: string, what: string): { service: string; vm: string } {
  const ref = parseVmName(text);
  if (ref.vm === undefined) throw new UsageError(`${what} ${text}: name the VM as SERVICE/VM`);
  return { service: ref.service, vm: ref.vm };
}
