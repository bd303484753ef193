/**
 * The VM side of the world's links, configured from one process for many VM namespaces.
 *
 * Node cannot enter a network namespace, and `ip` configures only the namespace it runs in, so each
 * VM namespace cost a process or two (`nsenter` and `ip`): at 1,000 VMs on two cores that was 9 of
 * the 11 s of an apply. Perl is in every Debian (`perl-base` is Essential) and can call setns(2):
 * one perl process enters each namespace in turn and speaks rtnetlink to it — the five requests
 * `ip` would send for a VM's lines, nothing else.
 *
 * The lines stay `ip -batch` lines (planWorld's, which its tests pin); `vmLinkOps` translates the
 * few forms planWorld writes for a VM into the helper's operations, and a job with any other line is
 * not the helper's (the caller runs it through `ip`).
 */

/** One operation of the helper, on a link of the namespace it is in. */
export type VmLinkOp =
  | { op: 'up'; dev: string }
  | { op: 'addrgen-none'; dev: string }
  | { op: 'addr-add'; dev: string; address: string; prefix: number }
  | { op: 'addr-flush'; dev: string }
  | { op: 'route-add' | 'route-replace'; gateway: string };

const DEV = '([A-Za-z0-9_.-]{1,15})';
const IPV4 = '((?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?:\\.(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3})';
const FORMS: readonly [RegExp, (m: RegExpMatchArray) => VmLinkOp][] = [
  [new RegExp(`^link set ${DEV} up$`), (m) => ({ op: 'up', dev: m[1]! })],
  [new RegExp(`^link set ${DEV} addrgenmode none$`), (m) => ({ op: 'addrgen-none', dev: m[1]! })],
  [
    new RegExp(`^addr add ${IPV4}/(3[0-2]|[12]?\\d) dev ${DEV}$`),
    (m) => ({ op: 'addr-add', dev: m[3]!, address: m[1]!, prefix: Number(m[2]) }),
  ],
  [new RegExp(`^addr flush dev ${DEV}$`), (m) => ({ op: 'addr-flush', dev: m[1]! })],
  [new RegExp(`^route add default via ${IPV4}$`), (m) => ({ op: 'route-add', gateway: m[1]! })],
  [new RegExp(`^route replace default via ${IPV4}$`), (m) => ({ op: 'route-replace', gateway: m[1]! })],
];

/** The helper's operations for `ip -batch` lines, or undefined when one of them is not of its forms. Pure. */
export function vmLinkOps(lines: readonly string[]): VmLinkOp[] | undefined {
  const ops: VmLinkOp[] = [];
  for (const line of lines) {
    const form = FORMS.find(([re]) => re.test(line));
    if (form === undefined) return undefined;
    ops.push(form[1](line.match(form[0])!));
  }
  return ops;
}

/** The helper's input line for an operation. */
export function opLine(o: VmLinkOp): string {
  switch (o.op) {
    case 'up':
    case 'addrgen-none':
    case 'addr-flush':
      return `${o.op} ${o.dev}`;
    case 'addr-add':
      return `${o.op} ${o.dev} ${o.address} ${o.prefix}`;
    case 'route-add':
    case 'route-replace':
      return `${o.op} ${o.gateway}`;
  }
}

/** setns(2)'s number where Linux gives it one per architecture (asm-generic's 268 elsewhere). */
const SETNS: Partial<Record<NodeJS.Architecture, number>> = {
  x64: 308,
  ia32: 346,
  arm64: 268,
  riscv64: 268,
  loong64: 268,
  arm: 375,
  ppc64: 350,
  s390x: 339,
};

/** The setns(2) number on this machine, or undefined where the helper cannot run. */
export const setnsSyscall = (arch: NodeJS.Architecture = process.arch): number | undefined =>
  process.platform === 'linux' ? SETNS[arch] : undefined;

/**
 * The helper. Argument: setns's syscall number. Input: jobs, each `ns NAME`, operation lines, an
 * empty line. Per job it opens /run/netns/NAME, enters it, opens a NETLINK_ROUTE socket there (a
 * netlink socket belongs to the namespace it was made in) and sends each operation as `ip` would,
 * waiting for the kernel's acknowledgement. At the first error it writes `in NAME: LINE: ERROR` to
 * stderr and exits 1. Names and lines are data to it: a name is a file under /run/netns, no more.
 */
export const VM_LINKS_PERL = String.raw`
use strict; use warnings;
my $SETNS = 0 + $ARGV[0];
my ($sock, $job, $line, $seq) = (undef, '', '', 0);
sub fail { print STDERR "in $job: $line: $_[0]\n"; exit 1; }
sub attr { my ($t, $d) = @_; my $l = 4 + length $d; pack('SS', $l, $t) . $d . ("\0" x ((4 - $l % 4) % 4)) }
sub ipv4 { pack('C4', split /\./, $_[0]) }
sub ifinfo { pack('CCSiII', 0, 0, 0, 0, $_[0], $_[1]) }
# Sends one request and returns the messages the kernel answers before its acknowledgement (or the
# end of a dump). An error is fatal unless its errno is in @ok.
sub request {
  my ($type, $flags, $body, @ok) = @_;
  $seq++;
  defined send($sock, pack('LSSLL', 16 + length $body, $type, $flags | 5, $seq, 0) . $body, 0) or fail("$!");
  my @replies;
  while (1) {
    my $buf = '';
    defined recv($sock, $buf, 1 << 16, 0) or fail("$!");
    my $off = 0;
    while ($off + 16 <= length $buf) {
      my ($len, $t, $f, $s) = unpack('LSSL', substr($buf, $off, 16));
      last if $len < 16;
      my $data = substr($buf, $off + 16, $len - 16);
      $off += ($len + 3) & ~3;
      next if $s != $seq;
      if ($t == 2) {
        my $err = -unpack('l', $data);
        if ($err != 0 && !grep { $_ == $err } @ok) { $! = $err; fail("$!"); }
        return @replies;
      }
      return @replies if $t == 3;
      push @replies, [$t, $data];
    }
  }
}
sub ifindex {
  for (request(18, 0, ifinfo(0, 0) . attr(3, "$_[0]\0"))) { return unpack('i', substr($_->[1], 4, 4)) if $_->[0] == 16 }
  fail('no such device');
}
while (defined($line = <STDIN>)) {
  chomp $line;
  my @w = split / /, $line;
  if ($line eq '') { close $sock if defined $sock; undef $sock; $job = ''; }
  elsif ($w[0] eq 'ns') {
    $job = $w[1];
    open(my $fh, '<', "/run/netns/$job") or fail("$!");
    syscall($SETNS, fileno($fh), 0x40000000) == 0 or fail("setns: $!");
    close $fh;
    socket($sock, 16, 3, 0) or fail("netlink: $!");
  }
  # RTM_NEWLINK by name: IFF_UP.
  elsif ($w[0] eq 'up') { request(16, 0, ifinfo(1, 1) . attr(3, "$w[1]\0")) }
  # IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE: IN6_ADDR_GEN_MODE_NONE } }.
  elsif ($w[0] eq 'addrgen-none') { request(16, 0, ifinfo(0, 0) . attr(3, "$w[1]\0") . attr(26, attr(10, attr(8, pack('C', 1))))) }
  # RTM_NEWADDR, NLM_F_CREATE|NLM_F_EXCL: IFA_LOCAL and IFA_ADDRESS, as ip sets them.
  elsif ($w[0] eq 'addr-add') {
    my $i = ifindex($w[1]);
    request(20, 0x600, pack('CCCCI', 2, $w[3], 0, 0, $i) . attr(2, ipv4($w[2])) . attr(1, ipv4($w[2])));
  }
  # A dump of the IPv4 addresses, each of the link's sent back as RTM_DELADDR (as ip's flush does);
  # a secondary gone with its primary is not an error.
  elsif ($w[0] eq 'addr-flush') {
    my $i = ifindex($w[1]);
    for (request(22, 0x300, pack('CCCCI', 2, 0, 0, 0, 0))) {
      next unless $_->[0] == 20 && unpack('I', substr($_->[1], 4, 4)) == $i;
      request(21, 0, $_->[1], 99);
    }
  }
  # RTM_NEWROUTE in main, proto boot, unicast: add is NLM_F_CREATE|NLM_F_EXCL, replace NLM_F_CREATE|NLM_F_REPLACE.
  elsif ($w[0] eq 'route-add' || $w[0] eq 'route-replace') {
    request(24, $w[0] eq 'route-add' ? 0x600 : 0x500, pack('CCCCCCCCI', 2, 0, 0, 0, 254, 3, 0, 1, 0) . attr(5, ipv4($w[1])));
  }
  else { fail('not an operation of this helper') }
}
`;

/** The helper's input for jobs whose lines all translate (`vmLinkOps`): the caller checked them. */
export function helperInput(jobs: readonly (readonly [string, readonly VmLinkOp[]])[]): string {
  return jobs.map(([ns, ops]) => [`ns ${ns}`, ...ops.map(opLine), ''].join('\n') + '\n').join('');
}
