// Usage: charts by day, grouped by model or provider, filters, the records table with each
// request's routing trace, and the export.
import { useState } from "preact/hooks";
import { call, session, type UsageGroup as Group } from "../api";
import { DailyChart } from "../chart";
import { ErrorLine, Field, Table, day, dollars, useAction, useLoad } from "../ui";

interface Record {
  id: string;
  timestamp: string;
  model: string;
  provider: string;
  inputTokens: number;
  outputTokens: number;
  cost: number;
  latencyMs: number;
  statusCode: number;
  outcome: string;
  streamed: boolean;
  routing?: { model: string; provider: string; status: number | null; latencyMs?: number; latency_ms?: number; error: string | null }[];
  candidates?: string[];
}

export function Usage() {
  const [filters, setFilters] = useState({ from: day(-13), to: day(), model: "", outcome: "", by: "model" });
  const [cursor, setCursor] = useState<string | null>(null);
  const [trace, setTrace] = useState<Record | null>(null);
  const query = (extra: string) => `from=${filters.from}&to=${filters.to}${extra}`;
  const load = useLoad(async () => {
    const recordQuery = query(`${filters.model ? `&model=${encodeURIComponent(filters.model)}` : ""}${filters.outcome ? `&outcome=${filters.outcome}` : ""}&limit=50${cursor ? `&cursor=${cursor}` : ""}`);
    const [byDay, grouped, records] = await Promise.all([
      call<{ groups: Group[] }>("GET", `/api/usage/summary?group_by=day&${query("")}`),
      call<{ groups: Group[] }>("GET", `/api/usage/summary?group_by=${filters.by}&${query("")}`),
      call<{ records: Record[]; nextCursor?: string | null }>("GET", `/api/usage?${recordQuery}`),
    ]);
    return { byDay, grouped, records };
  }, [filters.from, filters.to, filters.model, filters.outcome, filters.by, cursor]);
  const action = useAction();
  const set = (name: keyof typeof filters) => (e: Event) => {
    setCursor(null);
    setFilters({ ...filters, [name]: (e.currentTarget as HTMLInputElement).value });
  };
  const open = (id: string) => action.run(async () => setTrace(await call<Record>("GET", `/api/usage/${encodeURIComponent(id)}`)));
  const exportCsv = () =>
    action.run(async () => {
      const resp = await fetch(`/admin/v1/me/usage/logs/export?format=csv&from=${filters.from}T00:00:00Z&to=${filters.to}T23:59:59Z`, {
        headers: { Authorization: `Bearer ${session()?.token ?? ""}` },
      });
      if (!resp.ok) throw new Error(`the export failed: HTTP ${resp.status}`);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await resp.blob());
      link.download = `usage-${filters.from}-${filters.to}.csv`;
      link.click();
    });
  const d = load.data;
  const days: string[] = [];
  for (let t = Date.parse(filters.from); t <= Date.parse(filters.to) && days.length < 400; t += 86400000) days.push(new Date(t).toISOString().slice(0, 10));
  const at = (k: string) => d?.byDay.groups.find((g) => g.key === k);
  return (
    <section>
      <h1>Usage</h1>
      <form class="card row" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <Field label="From">
          <input type="date" value={filters.from} onInput={set("from")} />
        </Field>
        <Field label="To">
          <input type="date" value={filters.to} onInput={set("to")} />
        </Field>
        <Field label="Model">
          <input value={filters.model} onChange={set("model")} placeholder="any" />
        </Field>
        <Field label="Outcome">
          <select value={filters.outcome} onChange={set("outcome")}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="error">error</option>
            <option value="budget_exceeded">budget exceeded</option>
            <option value="timeout">timeout</option>
          </select>
        </Field>
        <Field label="Group by">
          <select value={filters.by} onChange={set("by")}>
            <option value="model">model</option>
            <option value="provider">provider</option>
            <option value="project">project</option>
            <option value="token">key</option>
          </select>
        </Field>
        <button type="button" onClick={exportCsv}>
          Export CSV
        </button>
      </form>
      <ErrorLine error={action.error ?? load.error} />
      {d && (
        <>
          <DailyChart title="Requests per day" days={days} series={[{ label: "requests", color: "#16a34a", values: days.map((x) => at(x)?.requestCount ?? 0) }]} />
          <DailyChart title="Spend per day ($)" days={days} series={[{ label: "spend", color: "#2563eb", values: days.map((x) => at(x)?.cost ?? 0) }]} />
          <h2>By {filters.by}</h2>
          <Table head={[filters.by, "Requests", "Input tokens", "Output tokens", "Cost"]} rows={d.grouped.groups.map((g) => [g.key ?? "(none)", g.requestCount, g.inputTokens, g.outputTokens, dollars(g.cost)])} />
          <h2>Requests</h2>
          <Table
            head={["Time", "Model", "Provider", "Tokens in/out", "Cost", "Latency", "Status", "Outcome", ""]}
            rows={d.records.records.map((r) => [
              r.timestamp.slice(0, 19).replace("T", " "),
              r.model,
              r.provider,
              `${r.inputTokens}/${r.outputTokens}`,
              dollars(r.cost),
              `${r.latencyMs} ms`,
              r.statusCode,
              r.outcome,
              <button type="button" onClick={() => open(r.id)} aria-label={`Trace of request ${r.id}`}>
                Trace
              </button>,
            ])}
            empty="No requests in this range."
          />
          {d.records.nextCursor && (
            <button type="button" onClick={() => setCursor(d.records.nextCursor ?? null)}>
              Older requests
            </button>
          )}
        </>
      )}
      {trace && (
        <div class="card" role="dialog" aria-label="Routing trace">
          <h2>Request {trace.id}</h2>
          <p>Candidates: {(trace.candidates ?? []).join(" → ") || "(one model)"}</p>
          <Table
            head={["#", "Model", "Provider", "Status", "Latency", "Error"]}
            rows={(trace.routing ?? []).map((a, i) => [i + 1, a.model, a.provider, a.status ?? "none", `${a.latencyMs ?? a.latency_ms ?? 0} ms`, a.error ?? ""])}
          />
          <button type="button" onClick={() => setTrace(null)}>
            Close
          </button>
        </div>
      )}
    </section>
  );
}
