import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isVipdipError } from '../core/errors.ts';
import {
  DEFAULT_SANDBOX_LIMITS,
  inNamespace,
  limitedCommand,
  sandboxEnv,
  sandboxLimits,
  sharedHostLimits,
  workDirName,
  WORKLOAD_NICE,
} from './sandbox.ts';

const L = { processes: 64, openFiles: 256, addressSpaceBytes: 1024 ** 3, cpuSeconds: 60 };
const cmd = { command: '/bin/sh', args: ['-c', 'echo "$@"'] };

describe('the workload sandbox', () => {
  test('a shared host gets each VM’s open files and CPU time, up to the hard limit it may raise to', () => {
    assert.deepEqual(sharedHostLimits(L, 7, 20_000), { ...L, openFiles: 7 * 256, cpuSeconds: 7 * 60 });
    assert.equal(sharedHostLimits(L, 128, 20_000).openFiles, 20_000);
    // Never less than one workload's, whatever the hard limit says.
    assert.equal(sharedHostLimits(L, 3, 100).openFiles, 256);
    assert.deepEqual(
      [sharedHostLimits(L, 128, 20_000).processes, sharedHostLimits(L, 128, 20_000).addressSpaceBytes],
      [L.processes, L.addressSpaceBytes],
    );
  });

  test('prlimit sets every limit, then nice lowers the priority, then the command runs as given', () => {
    assert.deepEqual(
      limitedCommand(cmd, L, { prlimit: '/usr/bin/prlimit', nice: '/usr/bin/nice', processes: true }),
      {
        command: '/usr/bin/prlimit',
        args: [
          '--nproc=64',
          '--nofile=256',
          `--as=${1024 ** 3}`,
          '--cpu=60',
          '--',
          '/usr/bin/nice',
          '-n',
          String(WORKLOAD_NICE),
          '/bin/sh',
          '-c',
          'echo "$@"',
        ],
      },
    );
  });

  test('as the server’s own user the process count is left alone (it would count the server’s)', () => {
    const c = limitedCommand(cmd, L, { prlimit: '/usr/bin/prlimit', nice: undefined, processes: false });
    assert.ok(!c.args.some((a) => a.startsWith('--nproc')));
    assert.deepEqual(c.args.slice(-3), ['/bin/sh', '-c', 'echo "$@"']);
  });

  test('without prlimit the shell’s ulimit sets the limits and the command keeps its arguments intact', () => {
    const c = limitedCommand(cmd, L, { prlimit: undefined, nice: undefined, processes: true });
    assert.equal(c.command, '/bin/sh');
    assert.equal(c.args[1], `ulimit -n 256 -v ${1024 ** 2} -t 60 && exec "$@"`);
    assert.deepEqual(c.args.slice(3), ['/bin/sh', '-c', 'echo "$@"']);
  });

  test('a workload’s environment is PATH and its own variables, whatever they try', () => {
    assert.deepEqual(sandboxEnv({ VIPDIP_VM: 'web1', PATH: '/evil' }, '/usr/bin:/bin'), {
      VIPDIP_VM: 'web1',
      PATH: '/usr/bin:/bin',
    });
  });

  test('each VM has its own directory name; nothing in a key climbs out of the root', () => {
    assert.equal(workDirName('shop/web1'), 'shop.web1');
    assert.equal(workDirName('../x'), '__.x');
    assert.equal(workDirName('..'), '__');
    assert.ok(!workDirName('a/../../etc').includes('/'));
  });

  test('limits come from VIPDIP_WORKLOAD_MAX_*, and a bad value is a one-line error', () => {
    assert.deepEqual(sandboxLimits({}), DEFAULT_SANDBOX_LIMITS);
    assert.deepEqual(
      sandboxLimits({
        VIPDIP_WORKLOAD_MAX_PROCESSES: '100',
        VIPDIP_WORKLOAD_MAX_OPEN_FILES: '50',
        VIPDIP_WORKLOAD_MAX_MEMORY_MB: '512',
        VIPDIP_WORKLOAD_MAX_CPU_SECONDS: '9',
      }),
      { processes: 100, openFiles: 50, addressSpaceBytes: 512 * 1024 * 1024, cpuSeconds: 9 },
    );
    for (const v of ['0', '-1', '1e9', 'lots']) {
      assert.throws(
        () => sandboxLimits({ VIPDIP_WORKLOAD_MAX_PROCESSES: v }),
        (e) => isVipdipError(e, 'INVALID_ARGUMENT'),
      );
    }
  });
});

describe('a launch inside a network namespace', () => {
  test('enters it as root, then setpriv drops to the sandbox user before the limits and the command', () => {
    const cmd = { command: '/usr/bin/prlimit', args: ['--nofile=4096', '--', 'node', 'w.js'] };
    assert.deepEqual(inNamespace('vdabc-vm-shop-web1', cmd, { uid: 999, gid: 998 }), {
      command: 'ip',
      args: [
        'netns',
        'exec',
        'vdabc-vm-shop-web1',
        'setpriv',
        '--reuid=999',
        '--regid=998',
        '--clear-groups',
        '--',
        '/usr/bin/prlimit',
        '--nofile=4096',
        '--',
        'node',
        'w.js',
      ],
    });
  });
  test('without a sandbox user (not root) it only enters the namespace', () => {
    assert.deepEqual(inNamespace('ns', { command: 'a', args: ['b'] }, undefined), {
      command: 'ip',
      args: ['netns', 'exec', 'ns', 'a', 'b'],
    });
  });
});
