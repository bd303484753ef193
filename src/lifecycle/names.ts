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

/**
 * Subscription names are lower case: a name is read, typed and compared by people and scripts as DNS
 * names are, without regard to case, so `CONTOSO` beside `contoso` would be two tenants nobody can
 * tell apart. Refusing capitals keeps names unique as people read them.
 */
export function checkSubscriptionName(name: unknown): string {
  checkName('subscription', name);
  if ((name as string) !== (name as string).toLowerCase()) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `subscription name ${JSON.stringify(name)} must be lower case (names are compared without regard to case, as DNS names are)`,
    );
  }
  return name as string;
}
