// Personal API keys: create with limits and an optional response cache (the secret shown once,
// with a copy button), rotate with a grace period, revoke.
import { useState } from "preact/hooks";
import { call } from "../api";
import { Secret } from "../secret";
import { CacheField, ErrorLine, Field, Table, cacheOf, cacheText, dollars, useAction, useLoad, type Cache } from "../ui";

interface Key {
  id: string;
  name: string;
  key_prefix: string;
  budget_limit_cents: number | null;
  rate_limit_rpm: number | null;
  rate_limit_tpm: number | null;
  cache?: Cache;
  created_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
}

const num = (v: string) => (v.trim() === "" ? undefined : Number(v));

export function Keys() {
  const keys = useLoad(() => call<{ data: Key[] }>("GET", "/admin/v1/me/api-keys?limit=1000"));
  const blank = { name: "", budget: "", rpm: "", tpm: "", cache: "" };
  const [form, setForm] = useState(blank);
  const [secret, setSecret] = useState<string | null>(null);
  const [grace, setGrace] = useState("3600");
  const action = useAction();
  const create = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      const body = {
        name: form.name,
        budget_limit_cents: num(form.budget),
        rate_limit_rpm: num(form.rpm),
        rate_limit_tpm: num(form.tpm),
        cache: cacheOf(form.cache),
      };
      const created = await call<{ key: string }>("POST", "/admin/v1/me/api-keys", body);
      setSecret(created.key);
      setForm(blank);
      keys.reload();
    });
  };
  const rotate = (id: string) =>
    action.run(async () => {
      const rotated = await call<{ key: string }>("POST", `/admin/v1/me/api-keys/${id}/rotate`, { grace_period_seconds: Number(grace) });
      setSecret(rotated.key);
      keys.reload();
    });
  const revoke = (id: string) =>
    action.run(async () => {
      await call("DELETE", `/admin/v1/me/api-keys/${id}`);
      keys.reload();
    });
  const set = (name: keyof typeof form) => (e: Event) => setForm({ ...form, [name]: (e.currentTarget as HTMLInputElement).value });
  return (
    <section>
      <h1>API keys</h1>
      {secret && <Secret secret={secret} close={() => setSecret(null)} />}
      <form class="card row" onSubmit={create} aria-label="Create a key">
        <Field label="Name">
          <input required value={form.name} onInput={set("name")} />
        </Field>
        <Field label="Budget (cents)">
          <input type="number" min={1} value={form.budget} onInput={set("budget")} />
        </Field>
        <Field label="Requests per minute">
          <input type="number" min={1} value={form.rpm} onInput={set("rpm")} />
        </Field>
        <Field label="Tokens per minute">
          <input type="number" min={1} value={form.tpm} onInput={set("tpm")} />
        </Field>
        <CacheField value={form.cache} onInput={(cache) => setForm({ ...form, cache })} />
        <button disabled={action.busy}>Create key</button>
      </form>
      <ErrorLine error={action.error ?? keys.error} />
      <div class="row">
        <Field label="Rotation grace (seconds the old secret keeps working)">
          <input type="number" min={1} value={grace} onInput={(e) => setGrace(e.currentTarget.value)} />
        </Field>
      </div>
      <Table
        head={["Name", "Prefix", "Budget", "Limits", "Cache", "Last used", "State", ""]}
        rows={(keys.data?.data ?? []).map((k) => [
          k.name,
          <code>{k.key_prefix}</code>,
          k.budget_limit_cents == null ? "none" : dollars(k.budget_limit_cents / 100),
          [k.rate_limit_rpm && `${k.rate_limit_rpm} rpm`, k.rate_limit_tpm && `${k.rate_limit_tpm} tpm`].filter(Boolean).join(", ") || "none",
          cacheText(k.cache) || "none",
          k.last_used_at?.slice(0, 19).replace("T", " ") ?? "never",
          k.revoked_at ? "revoked" : "active",
          k.revoked_at ? (
            ""
          ) : (
            <span class="actions">
              <button type="button" onClick={() => rotate(k.id)} aria-label={`Rotate ${k.name}`}>
                Rotate
              </button>
              <button type="button" class="danger" onClick={() => revoke(k.id)} aria-label={`Revoke ${k.name}`}>
                Revoke
              </button>
            </span>
          ),
        ])}
        empty="No keys yet: create one above."
      />
    </section>
  );
}
