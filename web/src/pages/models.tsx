// The model catalog: prices, whether a provider key is set, routing (deployments and
// fallbacks), add, edit the routing, rotate a key, remove.
import { useState } from "preact/hooks";
import { call } from "../api";
import { ErrorLine, Field, Table, useAction, useLoad } from "../ui";
import { DeploymentsCell, RoutingEditor, fallbacksText, type Routed } from "./routing";

interface Model extends Routed {
  id: string;
  provider: string;
  inputPrice: number;
  outputPrice: number;
  contextWindow: number;
  hasApiKey: boolean;
}

export function Models() {
  const models = useLoad(() => call<Model[]>("GET", "/api/models"));
  const blank = { id: "", provider: "mock", inputPrice: "1", outputPrice: "2", contextWindow: "128000", baseUrl: "", apiKey: "" };
  const [form, setForm] = useState(blank);
  const [editing, setEditing] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const action = useAction();
  const add = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      await call("POST", "/api/models", {
        id: form.id,
        provider: form.provider,
        inputPrice: Number(form.inputPrice),
        outputPrice: Number(form.outputPrice),
        contextWindow: Number(form.contextWindow),
        baseUrl: form.baseUrl || undefined,
        apiKey: form.apiKey || undefined,
      });
      setForm(blank);
      models.reload();
    });
  };
  const rotateKey = (id: string) => {
    const apiKey = window.prompt(`New provider key for ${id}`);
    if (apiKey) action.run(async () => void (await call("POST", `/api/models/${encodeURIComponent(id)}/apikey`, { apiKey }), models.reload()));
  };
  const remove = (id: string) => action.run(async () => void (await call("DELETE", `/api/models/${encodeURIComponent(id)}`), models.reload()));
  const edited = models.data?.find((m) => m.id === editing);
  const set = (name: keyof typeof form) => (e: Event) => setForm({ ...form, [name]: (e.currentTarget as HTMLInputElement).value });
  return (
    <section>
      <h1>Models</h1>
      <form class="card row" onSubmit={add} aria-label="Add a model">
        <Field label="Model id">
          <input required value={form.id} onInput={set("id")} />
        </Field>
        <Field label="Provider">
          <input required value={form.provider} onInput={set("provider")} />
        </Field>
        <Field label="Input $/M tokens">
          <input type="number" step="any" min={0} required value={form.inputPrice} onInput={set("inputPrice")} />
        </Field>
        <Field label="Output $/M tokens">
          <input type="number" step="any" min={0} required value={form.outputPrice} onInput={set("outputPrice")} />
        </Field>
        <Field label="Context window">
          <input type="number" min={1} required value={form.contextWindow} onInput={set("contextWindow")} />
        </Field>
        <Field label="Base URL (optional)">
          <input type="url" value={form.baseUrl} onInput={set("baseUrl")} />
        </Field>
        <Field label="Provider key (optional)">
          <input type="password" autocomplete="off" value={form.apiKey} onInput={set("apiKey")} />
        </Field>
        <button disabled={action.busy}>Add model</button>
      </form>
      <ErrorLine error={action.error ?? models.error} />
      {saved && <p role="status">{saved}</p>}
      {edited && (
        <RoutingEditor
          key={edited.id}
          model={edited}
          models={(models.data ?? []).map((m) => m.id)}
          onSaved={() => (setSaved(`Saved the routing of ${edited.id}.`), setEditing(null), models.reload())}
          onCancel={() => setEditing(null)}
        />
      )}
      <Table
        head={["Model", "Provider", "Input $/M", "Output $/M", "Context", "Key", "Deployments", "Fallbacks", ""]}
        rows={(models.data ?? []).map((m) => [
          m.id,
          m.provider,
          m.inputPrice,
          m.outputPrice,
          m.contextWindow,
          m.hasApiKey ? "set" : "not set",
          <DeploymentsCell model={m} />,
          fallbacksText(m),
          <span class="actions">
            <button type="button" onClick={() => (setSaved(null), setEditing(m.id))} aria-label={`Edit routing of ${m.id}`}>
              Edit routing
            </button>
            <button type="button" onClick={() => rotateKey(m.id)} aria-label={`Rotate the key of ${m.id}`}>
              Rotate key
            </button>
            <button type="button" class="danger" onClick={() => remove(m.id)} aria-label={`Remove ${m.id}`}>
              Remove
            </button>
          </span>,
        ])}
        empty="No models yet: add one above (provider mock answers locally)."
      />
    </section>
  );
}
