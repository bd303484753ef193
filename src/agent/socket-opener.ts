/**
 * Sockets opened inside VM namespaces for a shared built-in host (builtins/host.ts).
 *
 * The sandbox user cannot enter a network namespace, and Node cannot enter one at all; a socket,
 * though, belongs to the namespace it was made in, whoever holds it later. So a root perl process
 * (perl-base is Essential in Debian, and vm-links.ts already enters namespaces so) enters each VM's
 * namespace in turn, opens and binds that VM's listening sockets on its DIP, keeps them open across
 * exec, and execs the rest of the launch: setpriv to the sandbox user, the limits, and the host,
 * which gets `--fds=[…]` appended: each socket's descriptor, or the text of why it could not be
 * opened (a VM whose address is gone answers that, and only that VM fails).
 */
import type { WorkloadCommand } from '../dataplane/index.ts';

export interface SocketToOpen {
  /** The VM's namespace (a name under /run/netns). */
  netns: string;
  protocol: 'tcp' | 'udp';
  address: string;
  port: number;
}

/**
 * Arguments: setns's number, the count of sockets, four words per socket (namespace, protocol,
 * address, port), then the command to exec. Every word is data: a namespace is a file name under
 * /run/netns, an address goes through inet_aton. The process stays in the last namespace it entered
 * (the host opens nothing itself); an error on one socket is that socket's text in --fds.
 */
export const OPENER_PERL = String.raw`
use strict; use warnings; use Socket;
$^F = 1 << 20;
my $SETNS = 0 + shift @ARGV;
my $n = 0 + shift @ARGV;
my (@fds, @keep);
my ($in, $why) = ('', '');
sub enter {
  open(my $fh, '<', "/run/netns/$_[0]") or return "$!";
  my $r = syscall($SETNS, fileno($fh), 0x40000000);
  my $e = "$!";
  close $fh;
  return $r == 0 ? '' : "setns: $e";
}
for (1 .. $n) {
  my ($ns, $proto, $addr, $port) = splice(@ARGV, 0, 4);
  if ($ns ne $in) { $why = enter($ns); $in = $why eq '' ? $ns : ''; }
  if ($in eq '') { push @fds, "cannot enter its namespace $ns: $why"; next; }
  my $udp = $proto eq 'udp';
  my $s;
  unless (socket($s, PF_INET, $udp ? SOCK_DGRAM : SOCK_STREAM, 0)) { push @fds, "socket: $!"; next; }
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, pack('i', 1)) unless $udp;
  my $ip = inet_aton($addr);
  unless (defined $ip && bind($s, pack_sockaddr_in($port, $ip))) { push @fds, "$!"; close $s; next; }
  unless ($udp || listen($s, 511)) { push @fds, "listen: $!"; close $s; next; }
  push @keep, $s;
  push @fds, fileno($s);
}
my $json = '[' . join(',', map { /^\d+$/ ? $_ : '"' . s/(["\\])/\\$1/gr . '"' } @fds) . ']';
exec { $ARGV[0] } @ARGV, "--fds=$json" or die "exec $ARGV[0]: $!\n";
`;

/** The launch that opens `sockets` as root, then runs `then` (which drops to the sandbox user). Pure. */
export function openerCommand(
  perl: string,
  setns: number,
  sockets: readonly SocketToOpen[],
  then: WorkloadCommand,
): WorkloadCommand {
  return {
    command: perl,
    args: [
      '-e',
      OPENER_PERL,
      String(setns),
      String(sockets.length),
      ...sockets.flatMap((s) => [s.netns, s.protocol, s.address, String(s.port)]),
      then.command,
      ...then.args,
    ],
  };
}
