/** The lifecycle buttons of a VM, each behind a confirmation that says what happens to its addresses. */
import type { Service, Vm } from '../../../core/api-shapes.ts';
import { paths } from '../../lib/paths.ts';
import { ACTION_LABELS, VM_ACTIONS, canDo, consequence, type VmAction } from '../../lib/vm-actions.ts';
import { useSession } from '../session.ts';
import { confirm } from './confirm.tsx';

export function VmActions({
  vm,
  service,
  allocatedInService,
  compact = false,
  onDeleted,
}: {
  vm: Vm;
  service: Service | undefined;
  allocatedInService: number;
  compact?: boolean;
  /** Where to go once the VM is gone (its own page would only say it is not found). */
  onDeleted?: () => void;
}) {
  const session = useSession();
  const name = `${vm.service}/${vm.name}`;
  const run = async (action: VmAction) => {
    const label = `${ACTION_LABELS[action]} ${name}`;
    const ok = await confirm({
      title: `${ACTION_LABELS[action]} ${name}?`,
      body: <p>{consequence(action, vm, service ?? { vip: null, reservedIp: null }, allocatedInService)}</p>,
      confirmLabel: ACTION_LABELS[action],
      danger: action === 'delete' || action === 'deallocate',
    });
    if (!ok) return;
    const done = await session.act(
      label,
      () =>
        action === 'delete'
          ? session.client.send('DELETE', paths.vm(vm.service, vm.name))
          : session.client.send('POST', paths.vmOperation(vm.service, vm.name, action)),
      { exact: [], prefix: ['/v1/'] },
    );
    if (done && action === 'delete') onDeleted?.();
  };
  return (
    <div className={`actions${compact ? ' compact' : ''}`} role="group" aria-label={`Actions on ${name}`}>
      {VM_ACTIONS.map((a) => (
        <button
          key={a}
          type="button"
          className={a === 'delete' ? 'danger-outline' : undefined}
          disabled={!canDo(a, vm.state)}
          onClick={() => void run(a)}
          aria-label={`${ACTION_LABELS[a]} ${name}`}
        >
          {ACTION_LABELS[a]}
        </button>
      ))}
    </div>
  );
}
