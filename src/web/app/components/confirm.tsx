/**
 * Confirmation before an action, in a native modal <dialog>: it traps focus, Escape cancels, and
 * focus returns to the button that opened it.
 */
import { useEffect, useRef, type ReactNode } from 'react';
import { Watched, useWatched } from '../store.ts';

interface ConfirmRequest {
  title: string;
  body: ReactNode;
  confirmLabel: string;
  /** Destructive: the Cancel button has the focus first. */
  danger?: boolean;
  resolve(ok: boolean): void;
}

const request = new Watched<ConfirmRequest | null>(null);

export function confirm(opts: Omit<ConfirmRequest, 'resolve'>): Promise<boolean> {
  request.get()?.resolve(false);
  return new Promise((resolve) => request.set({ ...opts, resolve }));
}

export function ConfirmHost() {
  const req = useWatched(request);
  const dialog = useRef<HTMLDialogElement>(null);
  const opener = useRef<Element | null>(null);

  useEffect(() => {
    const d = dialog.current;
    if (d === null) return;
    if (req !== null && !d.open) {
      opener.current = document.activeElement;
      d.showModal();
      // React does not write autofocus into the DOM, so showModal would focus the first button.
      d.querySelector<HTMLButtonElement>('[data-autofocus]')?.focus();
    } else if (req === null && d.open) d.close();
  }, [req]);

  const finish = (ok: boolean) => {
    const r = request.get();
    request.set(null);
    r?.resolve(ok);
    if (opener.current instanceof HTMLElement && opener.current.isConnected) opener.current.focus();
  };

  return (
    <dialog
      ref={dialog}
      className="confirm"
      aria-labelledby="confirm-title"
      aria-describedby="confirm-body"
      onCancel={(e) => {
        e.preventDefault();
        finish(false);
      }}
    >
      {req !== null ? (
        <>
          <h2 id="confirm-title">{req.title}</h2>
          <div id="confirm-body">{req.body}</div>
          <div className="dialog-buttons">
            <button
              type="button"
              onClick={() => finish(false)}
              data-autofocus={req.danger === true ? '' : undefined}
            >
              Cancel
            </button>
            <button
              type="button"
              className={req.danger === true ? 'danger' : 'primary'}
              onClick={() => finish(true)}
              data-autofocus={req.danger !== true ? '' : undefined}
            >
              {req.confirmLabel}
            </button>
          </div>
        </>
      ) : null}
    </dialog>
  );
}
