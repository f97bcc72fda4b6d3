// The audit log (global admins): every change made through the admin API, newest first, with
// who made it, from where, and the fields it changed.
import { useState } from "preact/hooks";
import { call } from "../api";
import { ErrorLine, Field, Table, useLoad } from "../ui";

interface Change {
  item: string;
  op: string;
  before: Record<string, unknown>;
  after: Record<string, unknown>;
}

interface AuditEvent {
  id: string;
  at: string;
  actor: { kind: string; id?: string };
  source: string | null;
  action: string;
  target: string;
  changes: Change[];
}

interface Page {
  data: AuditEvent[];
  next_cursor: string | null;
}

function describe(c: Change): string {
  const fields = Object.keys({ ...c.before, ...c.after });
  const shown = fields.map((f) => `${f}: ${JSON.stringify(c.before[f] ?? null)} → ${JSON.stringify(c.after[f] ?? null)}`);
  return `${c.item} ${c.op}${shown.length ? ` (${shown.join(", ")})` : ""}`;
}

export function Audit() {
  const [filter, setFilter] = useState({ action: "", target: "", actor: "" });
  const [applied, setApplied] = useState(filter);
  const [cursor, setCursor] = useState<string | null>(null);
  const query = () => {
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, v] of Object.entries(applied)) if (v) q.set(k, v);
    if (cursor) q.set("cursor", cursor);
    return q;
  };
  const page = useLoad(() => call<Page>("GET", `/api/audit?${query()}`), [applied, cursor]);
  const exportQuery = new URLSearchParams(Object.entries(applied).filter(([, v]) => v));
  return (
    <section>
      <h1>Audit log</h1>
      <form
        class="card row"
        aria-label="Filter the audit log"
        onSubmit={(e) => {
          e.preventDefault();
          setCursor(null);
          setApplied(filter);
        }}
      >
        <Field label="Action">
          <input placeholder="DELETE, /api/models" value={filter.action} onInput={(e) => setFilter({ ...filter, action: e.currentTarget.value })} />
        </Field>
        <Field label="Target">
          <input placeholder="id=gpt-4o" value={filter.target} onInput={(e) => setFilter({ ...filter, target: e.currentTarget.value })} />
        </Field>
        <Field label="Actor id">
          <input value={filter.actor} onInput={(e) => setFilter({ ...filter, actor: e.currentTarget.value })} />
        </Field>
        <button type="submit">Filter</button>
      </form>
      <ErrorLine error={page.error} />
      <Table
        head={["When", "Who", "From", "Action", "Target", "Changes"]}
        rows={(page.data?.data ?? []).map((e) => [
          new Date(e.at).toLocaleString(),
          e.actor.kind === "anonymous" ? "anonymous" : `${e.actor.kind} ${e.actor.id}`,
          e.source ?? "",
          e.action,
          e.target,
          e.changes.map(describe).join("; "),
        ])}
        empty="No changes recorded."
      />
      <p class="row">
        {page.data?.next_cursor && (
          <button type="button" onClick={() => setCursor(page.data!.next_cursor)}>
            Older events
          </button>
        )}
        {cursor && (
          <button type="button" onClick={() => setCursor(null)}>
            Newest events
          </button>
        )}
        <span class="muted">
          Export with the same filters: GET /api/audit/export?{exportQuery.toString()} (format=jsonl or csv).
        </span>
      </p>
    </section>
  );
}
