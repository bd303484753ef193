import { VipdipError } from '../core/errors.ts';

/** Cloud service and VM names are DNS labels: they become `VM.SERVICE.<zone>` names. */
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Other names (subscriptions, networks, subnets, reserved IPs, hosts) are a little freer. */
const NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;

export function checkDnsLabel(kind: string, name: unknown): string {
  if (typeof name !== 'string' || !DNS_LABEL.test(name)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `${kind} name ${JSON.stringify(name)} is not a DNS label (lowercase letters, digits and inner hyphens, 1 to 63 characters)`,
    );
  }
  return name;
}

export function checkName(kind: string, name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `${kind} name ${JSON.stringify(name)} is invalid (letters, digits, '.', '_' and '-', 1 to 64 characters, starting and ending with a letter or digit)`,
    );
  }
  return name;
}
