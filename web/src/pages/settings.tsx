// Settings and notification channels (SMTP and webhooks; their secrets go to the secret store
// and never come back), with the test button; the users and their roles.
import { useState } from "preact/hooks";
import { call } from "../api";
import { ErrorLine, Field, Table, useAction, useLoad } from "../ui";
import { SingleSignOn } from "./sso";

interface Channel {
  name: string;
  type: string;
  host?: string;
  port?: number;
  from?: string;
  to?: string[];
  url?: string;
}
interface Settings {
  defaultTimeoutMs: number;
  publicUrl: string | null;
  budgetAlertThreshold: number;
  notifications: Channel[];
}

export function SettingsPage() {
  const settings = useLoad(() => call<Settings>("GET", "/api/settings"));
  const [hook, setHook] = useState({ name: "", url: "", secret: "" });
  const blankSmtp = { name: "", host: "", port: "587", tls: "starttls", username: "", password: "", from: "", to: "" };
  const [smtp, setSmtp] = useState(blankSmtp);
  const setS = (name: keyof typeof smtp) => (e: Event) => setSmtp({ ...smtp, [name]: (e.currentTarget as HTMLInputElement).value });
  const [tested, setTested] = useState<string | null>(null);
  const action = useAction();
  const s = settings.data;
  const save = (patch: { defaultTimeoutMs?: number; budgetAlertThreshold?: number; publicUrl?: string; notifications?: Record<string, unknown>[] }) => action.run(async () => void (await call("PUT", "/api/settings", patch), settings.reload()));
  // Channels go back as they are (their secrets stay where they are when omitted).
  const keep = (c: Channel): Record<string, unknown> => Object.fromEntries(Object.entries(c).filter(([k, v]) => v != null && k !== "hasPassword" && k !== "hasSecret"));
  return (
    <section>
      <h1>Settings</h1>
      <ErrorLine error={action.error ?? settings.error} />
      {s && (
        <form
          class="card row"
          aria-label="Gateway settings"
          onSubmit={(e) => {
            e.preventDefault();
            const form = new FormData(e.currentTarget as HTMLFormElement);
            save({ defaultTimeoutMs: Number(form.get("timeout")), budgetAlertThreshold: Number(form.get("threshold")), publicUrl: String(form.get("publicUrl") || "") || undefined });
          }}
        >
          <Field label="Default upstream timeout (ms)">
            <input name="timeout" type="number" min={1} defaultValue={String(s.defaultTimeoutMs)} />
          </Field>
          <Field label="Budget alert at (%)">
            <input name="threshold" type="number" min={1} max={100} defaultValue={String(s.budgetAlertThreshold)} />
          </Field>
          <Field label="Public URL">
            <input name="publicUrl" type="url" defaultValue={s.publicUrl ?? ""} />
          </Field>
          <button>Save settings</button>
        </form>
      )}
      <SingleSignOn />
      <h2>Notification channels</h2>
      <Table
        head={["Name", "Type", "Where", ""]}
        rows={(s?.notifications ?? []).map((c) => [
          c.name,
          c.type,
          c.url ?? `${c.host ?? ""}:${c.port ?? ""} → ${(c.to ?? []).join(", ")}`,
          <span class="actions">
            <button
              type="button"
              aria-label={`Test ${c.name}`}
              onClick={() => action.run(async () => setTested(JSON.stringify(await call("POST", "/api/notifications/test", { channelName: c.name }))))}
            >
              Test
            </button>
            <button type="button" class="danger" aria-label={`Remove ${c.name}`} onClick={() => save({ notifications: s!.notifications.filter((x) => x.name !== c.name).map(keep) })}>
              Remove
            </button>
          </span>,
        ])}
        empty="No channels: budget alerts and invites are not sent anywhere."
      />
      {tested && <p role="status">Test: {tested}</p>}
      <form
        class="card row"
        aria-label="Add a webhook"
        onSubmit={(e) => {
          e.preventDefault();
          save({ notifications: [...(s?.notifications ?? []).map(keep), { name: hook.name, type: "webhook", url: hook.url, secret: hook.secret || undefined }] });
          setHook({ name: "", url: "", secret: "" });
        }}
      >
        <Field label="Webhook name">
          <input required value={hook.name} onInput={(e) => setHook({ ...hook, name: e.currentTarget.value })} />
        </Field>
        <Field label="Webhook URL">
          <input required type="url" value={hook.url} onInput={(e) => setHook({ ...hook, url: e.currentTarget.value })} />
        </Field>
        <Field label="Signing secret (optional)">
          <input type="password" autocomplete="off" value={hook.secret} onInput={(e) => setHook({ ...hook, secret: e.currentTarget.value })} />
        </Field>
        <button>Add webhook</button>
      </form>
      <form
        class="card row"
        aria-label="Add a mail channel"
        onSubmit={(e) => {
          e.preventDefault();
          const channel = {
            name: smtp.name,
            type: "smtp",
            host: smtp.host,
            port: Number(smtp.port),
            tls: smtp.tls,
            username: smtp.username || undefined,
            password: smtp.password || undefined,
            from: smtp.from,
            to: smtp.to.split(",").map((t) => t.trim()).filter(Boolean),
          };
          save({ notifications: [...(s?.notifications ?? []).map(keep), channel] });
          setSmtp(blankSmtp);
        }}
      >
        <Field label="Mail channel name">
          <input required value={smtp.name} onInput={setS("name")} />
        </Field>
        <Field label="SMTP host">
          <input required value={smtp.host} onInput={setS("host")} />
        </Field>
        <Field label="SMTP port">
          <input type="number" min={1} max={65535} required value={smtp.port} onInput={setS("port")} />
        </Field>
        <Field label="TLS">
          <select value={smtp.tls} onChange={setS("tls")}>
            <option value="starttls">STARTTLS</option>
            <option value="tls">TLS</option>
            <option value="none">none</option>
          </select>
        </Field>
        <Field label="SMTP username">
          <input value={smtp.username} onInput={setS("username")} />
        </Field>
        <Field label="SMTP password">
          <input type="password" autocomplete="off" value={smtp.password} onInput={setS("password")} />
        </Field>
        <Field label="From address">
          <input type="email" required value={smtp.from} onInput={setS("from")} />
        </Field>
        <Field label="To (comma-separated)">
          <input required value={smtp.to} onInput={setS("to")} />
        </Field>
        <button>Add mail channel</button>
      </form>
      <Users />
    </section>
  );
}

const PERMISSIONS = ["project:read", "project:write", "model:read", "model:write", "user:read", "user:write", "report:read", "settings:read", "settings:write"];

function Users() {
  const users = useLoad(() => call<{ id: string; email: string; role: string }[] | { users: { id: string; email: string; role: string }[] }>("GET", "/api/users"));
  const roles = useLoad(() => call<{ name: string; permissions: string[] }[] | { roles: { name: string; permissions: string[] }[] }>("GET", "/api/roles"));
  const [form, setForm] = useState({ email: "", password: "", role: "viewer" });
  const action = useAction();
  const list = (v: unknown, key: string) => (Array.isArray(v) ? v : ((v as Record<string, unknown[]> | null)?.[key] ?? [])) as never[];
  return (
    <>
      <h2>Users</h2>
      <ErrorLine error={action.error ?? users.error ?? roles.error} />
      <Table
        head={["Email", "Role", ""]}
        rows={list(users.data, "users").map((u: { id: string; email: string; role: string }) => [
          u.email,
          u.role,
          <button type="button" class="danger" aria-label={`Delete user ${u.email}`} onClick={() => action.run(async () => void (await call("DELETE", `/api/users/${u.id}`), users.reload()))}>
            Delete
          </button>,
        ])}
      />
      <form
        class="card row"
        aria-label="Add a user"
        onSubmit={(e) => {
          e.preventDefault();
          action.run(async () => void (await call("POST", "/api/users", form), setForm({ email: "", password: "", role: "viewer" }), users.reload()));
        }}
      >
        <Field label="User email">
          <input type="email" required value={form.email} onInput={(e) => setForm({ ...form, email: e.currentTarget.value })} />
        </Field>
        <Field label="Initial password">
          <input type="password" required minLength={12} value={form.password} onInput={(e) => setForm({ ...form, password: e.currentTarget.value })} />
        </Field>
        <Field label="Role">
          <select value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>
            {list(roles.data, "roles").map((r: { name: string }) => (
              <option value={r.name}>{r.name}</option>
            ))}
          </select>
        </Field>
        <button>Add user</button>
      </form>
      <h2>Roles</h2>
      <form
        class="card row"
        aria-label="Create a role"
        onSubmit={(e) => {
          e.preventDefault();
          const element = e.currentTarget as HTMLFormElement;
          const form = new FormData(element);
          const permissions = PERMISSIONS.filter((p) => form.get(p) === "on");
          action.run(async () => void (await call("POST", "/api/roles", { name: String(form.get("role")), permissions }), element.reset(), roles.reload()));
        }}
      >
        <Field label="Role name">
          <input name="role" required />
        </Field>
        {PERMISSIONS.map((p) => (
          <label class="check">
            <input type="checkbox" name={p} /> {p}
          </label>
        ))}
        <button>Create role</button>
      </form>
      <Table head={["Role", "Permissions", ""]} rows={list(roles.data, "roles").map((r: { name: string; permissions: string[]; builtIn?: boolean; built_in?: boolean }) => [
          r.name,
          r.permissions.join(", "),
          (r.builtIn ?? r.built_in) ? "built in" : (
            <button type="button" class="danger" aria-label={`Delete role ${r.name}`} onClick={() => action.run(async () => void (await call("DELETE", `/api/roles/${encodeURIComponent(r.name)}`), roles.reload()))}>
              Delete
            </button>
          ),
        ])} />
    </>
  );
}
