/** The problems actions met, at the top of every page until dismissed. */
import { useSession } from '../session.ts';
import { useWatched } from '../store.ts';

export function ProblemsRegion() {
  const { problems } = useSession();
  const list = useWatched(problems);
  return (
    <div className="problems" aria-live="assertive">
      {list.map(({ id, action, problem }) => {
        const p = problem.problem;
        return (
          <div key={id} className="problem banner" role="alert" data-testid="problem">
            <div>
              <strong>
                {action} failed: {p.title}
              </strong>
              {p.detail ? <div className="problem-detail">{p.detail}</div> : null}
              {p.status > 0 ? (
                <div className="muted">
                  HTTP {p.status}
                  {p.code ? ` · ${p.code}` : ''}
                </div>
              ) : null}
              {p.errors?.map((e, i) => (
                <div key={i} className="muted">
                  <code>{e.path}</code> {e.message}
                </div>
              ))}
            </div>
            <button
              type="button"
              onClick={() => problems.dismiss(id)}
              aria-label={`Dismiss: ${action} failed`}
            >
              Dismiss
            </button>
          </div>
        );
      })}
    </div>
  );
}
