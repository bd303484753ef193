/** Addresses and names shown with a button that copies them. */
import { useEffect, useRef, useState } from 'react';

async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Without the async clipboard (an insecure origin, a denied permission): the older way.
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

/** Drawn, not a glyph: no font on the machine need have it. */
function CopyIcon({ state }: { state: 'idle' | 'copied' | 'failed' }) {
  return (
    <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" focusable="false" className="icon">
      {state === 'copied' ? (
        <path d="M3 8.5l3 3 7-7" fill="none" stroke="currentColor" strokeWidth="1.8" />
      ) : state === 'failed' ? (
        <path d="M4 4l8 8M12 4l-8 8" fill="none" stroke="currentColor" strokeWidth="1.8" />
      ) : (
        <>
          <rect
            x="5"
            y="5"
            width="8.5"
            height="8.5"
            rx="1.5"
            fill="none"
            stroke="currentColor"
            strokeWidth="1.4"
          />
          <path d="M3 10.5V3.8C3 3.3 3.3 3 3.8 3h6.7" fill="none" stroke="currentColor" strokeWidth="1.4" />
        </>
      )}
    </svg>
  );
}

export function CopyButton({ text, what }: { text: string; what?: string }) {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  const label = `Copy ${what ?? text}`;
  return (
    <button
      type="button"
      className="copy"
      aria-label={label}
      title={label}
      onClick={() => {
        void copyText(text).then((ok) => {
          setState(ok ? 'copied' : 'failed');
          clearTimeout(timer.current);
          timer.current = setTimeout(() => setState('idle'), 1500);
        });
      }}
    >
      <CopyIcon state={state} />
      <span className="visually-hidden" role="status">
        {state === 'copied' ? `copied ${text}` : state === 'failed' ? 'copy failed' : ''}
      </span>
    </button>
  );
}

/** An address in monospace with its copy button, or, when there is none, words saying so. */
export function Address({
  value,
  none = 'none',
  testId,
}: {
  value: string | null;
  none?: string;
  testId?: string;
}) {
  if (value === null)
    return (
      <span className="none muted" data-testid={testId}>
        {none}
      </span>
    );
  return (
    <span className="address">
      <code data-testid={testId}>{value}</code>
      <CopyButton text={value} />
    </span>
  );
}
