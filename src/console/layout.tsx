/**
 * The page frame every view shares: skip link, navigation limited to what the
 * session's role may open, who is signed in, sign-out, and the notice an
 * action redirected with. Text is escaped by JSX; nothing is built as a string.
 */
import type { Child } from 'hono/jsx';
import { raw } from 'hono/html';
import { roleHolds, type Permission } from '../auth/roles.ts';
import type { ConsoleSession } from '../auth/sessions.ts';

export interface PageProps {
  title: string;
  session?: ConsoleSession | undefined;
  org?: string | undefined;
  /** The nav entry to mark as the current page. */
  current?: string;
  notice?: string | undefined;
  error?: string | undefined;
  children?: Child;
}

const ORG_NAV: Array<{ id: string; label: string; permission: Permission }> = [
  { id: 'signals', label: 'Signals', permission: 'org:read' },
  { id: 'approvals', label: 'Approvals', permission: 'org:read' },
  { id: 'directives', label: 'Directives', permission: 'org:read' },
  { id: 'executions', label: 'Executions', permission: 'org:read' },
  { id: 'policies', label: 'Policies', permission: 'org:read' },
  { id: 'secrets', label: 'Secrets', permission: 'org:admin' },
  { id: 'installations', label: 'Installations', permission: 'org:read' },
  { id: 'replays', label: 'Replays', permission: 'org:read' },
];

function Nav({ session, org, current }: { session: ConsoleSession; org?: string | undefined; current?: string | undefined }) {
  const role = session.principal.role;
  const platform = session.principal.orgId === null;
  return (
    <nav aria-label="Console">
      <ul>
        {platform ? (
          <li>
            <a href="/console/orgs" aria-current={current === 'orgs' ? 'page' : undefined}>Orgs</a>
          </li>
        ) : null}
        {org
          ? ORG_NAV.filter((entry) => roleHolds(role, entry.permission)).map((entry) => (
              <li>
                <a href={`/console/orgs/${org}/${entry.id}`} aria-current={current === entry.id ? 'page' : undefined}>{entry.label}</a>
              </li>
            ))
          : null}
      </ul>
    </nav>
  );
}

export function Page({ title, session, org, current, notice, error, children }: PageProps) {
  return (
    <>
      {raw('<!doctype html>')}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title>{`${title} · signalbus console`}</title>
          <link rel="stylesheet" href="/console/assets/console.css" />
          <script src="/console/assets/console.js" defer></script>
        </head>
        <body>
          <a class="skip" href="#main">Skip to content</a>
          <header class="top">
            <a class="brand" href="/console">signalbus{org ? <span class="org"> · {org}</span> : null}</a>
            {session ? <Nav session={session} org={org} current={current} /> : null}
            {session ? (
              <form method="post" action="/console/sign-out" class="who">
                <span>
                  {session.principal.actor.id} <span class="role">({session.principal.role})</span>
                </span>
                <input type="hidden" name="_csrf" value={session.csrfToken} />
                <button type="submit">Sign out</button>
              </form>
            ) : null}
          </header>
          <main id="main" tabindex={-1}>
            <h1>{title}</h1>
            {notice ? <p class="notice" role="status">{notice}</p> : null}
            {error ? <p class="error" role="alert">{error}</p> : null}
            {children}
          </main>
        </body>
      </html>
    </>
  );
}

/** The session's CSRF token as the hidden field every state-changing form carries. */
export function Csrf({ session }: { session: ConsoleSession }) {
  return <input type="hidden" name="_csrf" value={session.csrfToken} />;
}

/** A value as indented JSON, escaped as text. */
export function Json({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function Time({ value }: { value: string | Date | null | undefined }) {
  if (!value) return <span>—</span>;
  const iso = typeof value === 'string' ? value : value.toISOString();
  return <time datetime={iso}>{iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>;
}

/** A link to the next page keeping the current filters. */
export function NextPage({ base, query, cursor }: { base: string; query: Record<string, string | undefined>; cursor: string | null }) {
  if (!cursor) return null;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value) params.set(name, value);
  params.set('after', cursor);
  return (
    <p class="pager">
      <a href={`${base}?${params.toString()}`} rel="next">Next page →</a>
    </p>
  );
}

/** A column heading; `hidden` ones are read by screen readers only (a column of buttons). */
export type Column = string | { hidden: string };

/**
 * A table with its column headings that scrolls sideways on a narrow screen.
 * `region` names the scrolling box and makes it focusable, for a table with
 * no link or button to reach it by keyboard.
 */
export function DataTable({ columns, label, region, children }: { columns: Column[]; label?: string; region?: string; children?: Child }) {
  return (
    <div class="scroll" {...(region ? { tabindex: 0, role: 'region', 'aria-label': region } : {})}>
      <table aria-label={label}>
        <thead>
          <tr>{columns.map((column) => <th scope="col">{typeof column === 'string' ? column : <span class="visually-hidden">{column.hidden}</span>}</th>)}</tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
