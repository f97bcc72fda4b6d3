// Your own providers (bring your own key): add, test, enable or disable, remove.
import { useState } from "preact/hooks";
import { call, schemaEnum } from "../api";
import { ErrorLine, Field, Table, useAction, useLoad } from "../ui";

interface Provider {
  id: string;
  name: string;
  provider_type: string;
  base_url: string | null;
  models: string[];
  is_enabled: boolean;
  has_api_key: boolean;
}

/** The types a provider of your own may have, as the server's API document says (its enum
 * comes from the server's one list of provider types). */
const providerTypes = () => schemaEnum("CreateProvider", "provider_type");

export function Providers() {
  const providers = useLoad(() => call<{ data: Provider[] }>("GET", "/admin/v1/me/providers?limit=1000"));
  const types = useLoad(providerTypes);
  const [form, setForm] = useState({ name: "", provider_type: "openai", base_url: "", api_key: "", models: "" });
  const [tested, setTested] = useState<string | null>(null);
  const action = useAction();
  const add = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      await call("POST", "/admin/v1/me/providers", {
        name: form.name,
        provider_type: form.provider_type,
        base_url: form.base_url || undefined,
        api_key: form.api_key || undefined,
        models: form.models.split(",").map((m) => m.trim()).filter(Boolean),
      });
      setForm({ ...form, name: "", api_key: "", models: "" });
      providers.reload();
    });
  };
  return (
    <section>
      <h1>Providers</h1>
      <form class="card row" onSubmit={add} aria-label="Add a provider">
        <Field label="Provider name">
          <input required value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
        </Field>
        <Field label="Type">
          <select value={form.provider_type} onChange={(e) => setForm({ ...form, provider_type: e.currentTarget.value })}>
            {(types.data ?? [form.provider_type]).map((k) => (
              <option value={k}>{k}</option>
            ))}
          </select>
        </Field>
        <Field label="Base URL (optional)">
          <input type="url" value={form.base_url} onInput={(e) => setForm({ ...form, base_url: e.currentTarget.value })} />
        </Field>
        <Field label="API key">
          <input type="password" autocomplete="off" value={form.api_key} onInput={(e) => setForm({ ...form, api_key: e.currentTarget.value })} />
        </Field>
        <Field label="Models (comma-separated)">
          <input value={form.models} onInput={(e) => setForm({ ...form, models: e.currentTarget.value })} />
        </Field>
        <button disabled={action.busy}>Add provider</button>
      </form>
      <ErrorLine error={action.error ?? providers.error ?? types.error} />
      {tested && <p role="status">{tested}</p>}
      <Table
        head={["Name", "Type", "Models", "Key", "State", ""]}
        rows={(providers.data?.data ?? []).map((p) => [
          p.name,
          p.provider_type,
          p.models.join(", "),
          p.has_api_key ? "set" : "not set",
          p.is_enabled ? "enabled" : "disabled",
          <span class="actions">
            <button
              type="button"
              aria-label={`Test ${p.name}`}
              onClick={() => action.run(async () => setTested(`${p.name}: ${JSON.stringify(await call("POST", `/admin/v1/me/providers/${p.id}/test`))}`))}
            >
              Test
            </button>
            <button
              type="button"
              aria-label={`${p.is_enabled ? "Disable" : "Enable"} ${p.name}`}
              onClick={() => action.run(async () => void (await call("PATCH", `/admin/v1/me/providers/${p.id}`, { is_enabled: !p.is_enabled }), providers.reload()))}
            >
              {p.is_enabled ? "Disable" : "Enable"}
            </button>
            <button type="button" class="danger" aria-label={`Remove ${p.name}`} onClick={() => action.run(async () => void (await call("DELETE", `/admin/v1/me/providers/${p.id}`), providers.reload()))}>
              Remove
            </button>
          </span>,
        ])}
        empty="No providers of your own yet."
      />
    </section>
  );
}
