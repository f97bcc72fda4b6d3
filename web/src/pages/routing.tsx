// A model's routing: where it is served (its deployments: provider, base URL, key, region,
// weight, rpm/tpm), how a deployment is chosen, its retry policy, the models that stand in for
// it and the upstream API it is served on. The choices of provider type, strategy and upstream
// API come from the server's API document.
import { useState } from "preact/hooks";
import { ApiError, call, schemaEnum } from "../api";
import { ErrorLine, Field, useAction, useLoad } from "../ui";

export interface DeploymentView {
  id: string;
  provider: string;
  baseUrl: string | null;
  region: string | null;
  weight: number;
  rpm: number | null;
  tpm: number | null;
  hasApiKey: boolean;
}

/** The routing fields of a model as `GET /api/models` gives them (each absent when unset). */
export interface Routed {
  id: string;
  provider: string;
  deployments?: DeploymentView[];
  routingStrategy?: string;
  fallbacks?: string[];
  contextWindowFallback?: string;
  retry?: { maxAttempts: number; maxTotalMs?: number | null };
  /** `responses` for a model served only on OpenAI's Responses API (absent: chat). */
  upstreamApi?: string;
}

/** "east (azure, eastus, w3)". */
export const deploymentText = (d: DeploymentView) => `${d.id} (${[d.provider, d.region, `w${d.weight}`].filter(Boolean).join(", ")})`;

/** The models table's cell for where a model is served, with its strategy, retry policy and
 * upstream API (when not chat). */
export function DeploymentsCell({ model }: { model: Routed }) {
  const notes = [
    model.upstreamApi && `${model.upstreamApi} API`,
    model.routingStrategy,
    model.retry && `${model.retry.maxAttempts} attempts${model.retry.maxTotalMs ? ` in ${model.retry.maxTotalMs} ms` : ""}`,
  ].filter(Boolean);
  return (
    <>
      {(model.deployments ?? []).map((d) => (
        <div>{deploymentText(d)}</div>
      ))}
      {notes.length > 0 && <div class="muted">{notes.join(", ")}</div>}
    </>
  );
}

export const fallbacksText = (model: Routed) =>
  [(model.fallbacks ?? []).join(", "), model.contextWindowFallback && `context window: ${model.contextWindowFallback}`].filter(Boolean).join("; ");

interface Row {
  id: string;
  provider: string;
  baseUrl: string;
  apiKey: string;
  region: string;
  weight: string;
  rpm: string;
  tpm: string;
  hasApiKey: boolean;
}

interface Form {
  rows: Row[];
  strategy: string;
  fallbacks: string;
  contextWindowFallback: string;
  maxAttempts: string;
  maxTotalMs: string;
  upstreamApi: string;
}

const text = (v: string | number | null | undefined) => (v == null ? "" : String(v));
const optional = (v: string) => v.trim() || undefined;
const number = (v: string) => (v.trim() === "" ? undefined : Number(v));
const ids = (v: string) => v.split(",").map((s) => s.trim()).filter(Boolean);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function formOf(model: Routed): Form {
  return {
    rows: (model.deployments ?? []).map((d) => ({
      id: d.id,
      provider: d.provider,
      baseUrl: text(d.baseUrl),
      apiKey: "",
      region: text(d.region),
      weight: text(d.weight),
      rpm: text(d.rpm),
      tpm: text(d.tpm),
      hasApiKey: d.hasApiKey,
    })),
    strategy: model.routingStrategy ?? "weighted",
    fallbacks: (model.fallbacks ?? []).join(", "),
    contextWindowFallback: model.contextWindowFallback ?? "",
    maxAttempts: text(model.retry?.maxAttempts),
    maxTotalMs: text(model.retry?.maxTotalMs),
    upstreamApi: model.upstreamApi ?? "chat",
  };
}

/** A deployment as the API takes it: the fields filled in only (a blank key keeps the key). */
const deploymentInput = (r: Row) => ({
  id: r.id.trim(),
  provider: r.provider,
  baseUrl: optional(r.baseUrl),
  apiKey: r.apiKey || undefined,
  region: optional(r.region),
  weight: number(r.weight),
  rpm: number(r.rpm),
  tpm: number(r.tpm),
});

/** The body of the PUT: the routing fields that differ from the model's, and no others. */
function changes(model: Routed, form: Form): Record<string, unknown> {
  const was = formOf(model);
  const body: Record<string, unknown> = {};
  const deployments = form.rows.map(deploymentInput);
  // The list is replaced whole, so it goes whole when any of it changed (a key typed included).
  if (!same(deployments, was.rows.map(deploymentInput))) body.deployments = deployments;
  if (form.strategy !== was.strategy) body.routingStrategy = form.strategy;
  if (form.upstreamApi !== was.upstreamApi) body.upstreamApi = form.upstreamApi;
  if (!same(ids(form.fallbacks), ids(was.fallbacks))) body.fallbacks = ids(form.fallbacks);
  // An empty id removes it.
  if (form.contextWindowFallback.trim() !== was.contextWindowFallback) body.contextWindowFallback = form.contextWindowFallback.trim();
  if (form.maxAttempts.trim() !== "" && (form.maxAttempts !== was.maxAttempts || form.maxTotalMs !== was.maxTotalMs)) {
    body.retry = { maxAttempts: Number(form.maxAttempts), maxTotalMs: number(form.maxTotalMs) };
  }
  return body;
}

/** The API's message, with the field it is about (`deployments[1].weight`). */
async function withParam<T>(request: Promise<T>): Promise<T> {
  try {
    return await request;
  } catch (e) {
    if (e instanceof ApiError && e.param) throw new Error(`${e.message} (${e.param})`);
    throw e;
  }
}

type Text = Exclude<keyof Row, "hasApiKey">;

/** A deployment's inputs after its id and provider: field, its name in labels, its heading,
 * its column's width (the others share what is left). */
const COLUMNS: [Text, string, string, string?][] = [
  ["baseUrl", "base URL", "Base URL", "22%"],
  ["apiKey", "API key", "API key"],
  ["region", "region", "Region"],
  ["weight", "weight", "Weight", "4.5rem"],
  ["rpm", "rpm", "RPM", "5rem"],
  ["tpm", "tpm", "TPM", "6rem"],
];

export function RoutingEditor({ model, models, onSaved, onCancel }: { model: Routed; models: string[]; onSaved: () => void; onCancel: () => void }) {
  const [form, setForm] = useState(() => formOf(model));
  const providers = useLoad(() => schemaEnum("ProviderType"));
  const strategies = useLoad(() => schemaEnum("Strategy"));
  const upstreamApis = useLoad(() => schemaEnum("UpstreamApi"));
  const action = useAction();
  const setRow = (i: number, patch: Partial<Row>) => setForm({ ...form, rows: form.rows.map((r, j) => (i === j ? { ...r, ...patch } : r)) });
  const addRow = () =>
    setForm({ ...form, rows: [...form.rows, { id: "", provider: model.provider, baseUrl: "", apiKey: "", region: "", weight: "1", rpm: "", tpm: "", hasApiKey: false }] });
  const removeRow = (i: number) => setForm({ ...form, rows: form.rows.filter((_, j) => j !== i) });
  const set = (name: Exclude<keyof Form, "rows">) => (e: Event) => setForm({ ...form, [name]: (e.currentTarget as HTMLInputElement).value });
  const save = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      const body = changes(model, form);
      if (Object.keys(body).length > 0) await withParam(call("PUT", `/api/models/${encodeURIComponent(model.id)}`, body));
      onSaved();
    });
  };
  const input = (r: Row, i: number, name: Text, label: string) => {
    const aria = `Deployment ${i + 1} ${label}`;
    const onInput = (e: Event) => setRow(i, { [name]: (e.currentTarget as HTMLInputElement).value });
    if (name === "apiKey") {
      const placeholder = r.hasApiKey ? "set (blank: keep)" : "blank: the model's";
      return <input type="password" autocomplete="off" aria-label={aria} placeholder={placeholder} value={r.apiKey} onInput={onInput} />;
    }
    const numeric = name === "weight" || name === "rpm" || name === "tpm";
    return <input aria-label={aria} type={numeric ? "number" : name === "baseUrl" ? "url" : "text"} required={name === "id"} value={r[name]} onInput={onInput} />;
  };
  return (
    <form class="card" onSubmit={save} aria-label={`Routing of ${model.id}`}>
      <h2>Routing of {model.id}</h2>
      <fieldset class="limits">
        <legend>Deployments (none: its own provider, base URL and key)</legend>
        {form.rows.length > 0 && (
          <table class="deployments">
            <thead>
              <tr>
                <th scope="col">Id</th>
                <th scope="col">Provider</th>
                {COLUMNS.map(([, , heading, width]) => (
                  <th scope="col" style={width && { width }}>
                    {heading}
                  </th>
                ))}
                <th style={{ width: "5.5rem" }} />
              </tr>
            </thead>
            <tbody>
              {form.rows.map((r, i) => (
                <tr key={i}>
                  <td>{input(r, i, "id", "id")}</td>
                  <td>
                    <select aria-label={`Deployment ${i + 1} provider`} value={r.provider} onChange={(e) => setRow(i, { provider: e.currentTarget.value })}>
                      {(providers.data ?? [r.provider]).map((p) => (
                        <option value={p}>{p}</option>
                      ))}
                    </select>
                  </td>
                  {COLUMNS.map(([name, label]) => (
                    <td>{input(r, i, name, label)}</td>
                  ))}
                  <td>
                    <button type="button" class="danger" aria-label={`Remove deployment ${i + 1}`} onClick={() => removeRow(i)}>
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <button type="button" onClick={addRow}>
          Add a deployment
        </button>
      </fieldset>
      <div class="row">
        <Field label="Routing strategy">
          <select value={form.strategy} onChange={set("strategy")}>
            {(strategies.data ?? [form.strategy]).map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </Field>
        <Field label="Upstream API">
          <select value={form.upstreamApi} onChange={set("upstreamApi")}>
            {(upstreamApis.data ?? [form.upstreamApi]).map((a) => (
              <option value={a}>{a}</option>
            ))}
          </select>
        </Field>
        <Field label="Fallbacks (comma-separated model ids)">
          <input value={form.fallbacks} onInput={set("fallbacks")} />
        </Field>
        <Field label="Context-window fallback">
          <input value={form.contextWindowFallback} onInput={set("contextWindowFallback")} list="routing-models" />
        </Field>
        <Field label="Retry max attempts">
          <input type="number" required={form.maxTotalMs !== "" || model.retry != null} value={form.maxAttempts} onInput={set("maxAttempts")} />
        </Field>
        <Field label="Retry max total ms">
          <input type="number" value={form.maxTotalMs} onInput={set("maxTotalMs")} />
        </Field>
        <datalist id="routing-models">
          {models
            .filter((id) => id !== model.id)
            .map((id) => (
              <option value={id} />
            ))}
        </datalist>
      </div>
      <ErrorLine error={action.error ?? providers.error ?? strategies.error ?? upstreamApis.error} />
      <p class="actions">
        <button disabled={action.busy}>Save routing</button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </p>
    </form>
  );
}
