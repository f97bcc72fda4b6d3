// Projects: create, model order, timeout, limits and response cache, members, project tokens
// (each with an optional cache of its own).
import { useState } from "preact/hooks";
import { call } from "../api";
import { LimitsEditor, type Limit } from "../limits";
import { CacheField, ErrorLine, Field, Table, cacheOf, cacheText, useAction, useLoad, type Cache } from "../ui";
import { NewToken } from "../secret";

interface Project {
  id: string;
  name: string;
  slug: string;
  workspaceId: string | null;
  models: string[];
  defaultTimeoutMs: number;
  limits: Limit[];
  cache?: Cache;
  role: string;
}

interface Token {
  id: string;
  name: string;
  tokenPrefix: string;
  cache?: Cache;
  lastUsedAt: string | null;
}

function ProjectDetail({ project, changed }: { project: Project; changed: () => void }) {
  const [models, setModels] = useState(project.models.join(", "));
  const [timeout, setTimeoutMs] = useState(String(project.defaultTimeoutMs));
  const [limits, setLimits] = useState<Limit[]>(project.limits);
  const [cache, setCache] = useState(project.cache ? String(project.cache.ttl) : "");
  const [member, setMember] = useState({ userId: "", role: "viewer" });
  const [saved, setSaved] = useState(false);
  const base = `/api/projects/${encodeURIComponent(project.slug)}`;
  const members = useLoad(() => call<{ userId: string; email: string; role: string }[]>("GET", `${base}/members`), [project.slug]);
  const tokens = useLoad(() => call<Token[]>("GET", `${base}/tokens`), [project.slug]);
  const action = useAction();
  const save = (e: Event) => {
    e.preventDefault();
    setSaved(false);
    action.run(async () => {
      const list = models.split(",").map((m) => m.trim()).filter(Boolean);
      // A blank cache field turns a cache the project has off.
      const caching = cacheOf(cache);
      const cacheChange = caching ? { cache: caching } : project.cache ? { cacheOff: true } : {};
      await call("PUT", base, { models: list, defaultTimeoutMs: Number(timeout), limits, ...cacheChange });
      setSaved(true);
      changed();
    });
  };
  return (
    <div class="card">
      <h2>Project {project.name}</h2>
      <form onSubmit={save} aria-label={`Settings of ${project.slug}`}>
        <div class="row">
          <Field label="Models, in routing order (comma-separated)">
            <input value={models} onInput={(e) => setModels(e.currentTarget.value)} />
          </Field>
          <Field label="Upstream timeout (ms)">
            <input type="number" min={1} value={timeout} onInput={(e) => setTimeoutMs(e.currentTarget.value)} />
          </Field>
          <CacheField label="Cache answers for (seconds, blank: off)" blank="blank: off" value={cache} onInput={setCache} />
        </div>
        <LimitsEditor limits={limits} onChange={setLimits} />
        <button disabled={action.busy}>Save project</button>
        {saved && <span role="status"> Saved.</span>}
      </form>
      <ErrorLine error={action.error ?? members.error ?? tokens.error} />
      <h3>Members</h3>
      <Table head={["Email", "Role"]} rows={(members.data ?? []).map((m) => [m.email, m.role])} />
      <form
        class="row"
        aria-label="Add a member"
        onSubmit={(e) => {
          e.preventDefault();
          action.run(async () => void (await call("POST", `${base}/members`, member), members.reload()));
        }}
      >
        <Field label="User id">
          <input required value={member.userId} onInput={(e) => setMember({ ...member, userId: e.currentTarget.value })} />
        </Field>
        <Field label="Project role">
          <select value={member.role} onChange={(e) => setMember({ ...member, role: e.currentTarget.value })}>
            <option value="viewer">viewer</option>
            <option value="editor">editor</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <button>Add member</button>
      </form>
      <h3>Tokens</h3>
      <Table
        head={["Name", "Prefix", "Cache", "Last used", ""]}
        rows={(tokens.data ?? []).map((t) => [
          t.name,
          <code>{t.tokenPrefix}</code>,
          cacheText(t.cache) || "the project's",
          t.lastUsedAt ?? "never",
          <button type="button" class="danger" aria-label={`Delete token ${t.name}`} onClick={() => action.run(async () => void (await call("DELETE", `${base}/tokens/${t.id}`), tokens.reload()))}>
            Delete
          </button>,
        ])}
      />
      <NewToken
        label="Create a project token"
        cacheField={{ label: "Cache this token's answers for (seconds, blank: the project's)", blank: "blank: the project's" }}
        created={tokens.reload}
        create={async (name, cache) => (await call<{ token: string }>("POST", `${base}/tokens`, { name, limits: [], cache })).token}
      />
    </div>
  );
}

export function Projects() {
  const projects = useLoad(() => call<Project[]>("GET", "/api/projects"));
  const blank = { name: "", slug: "", models: "", cache: "" };
  const [form, setForm] = useState(blank);
  const [open, setOpen] = useState<string | null>(null);
  const action = useAction();
  const create = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      const models = form.models.split(",").map((m) => m.trim()).filter(Boolean);
      await call("POST", "/api/projects", { name: form.name, slug: form.slug, models, cache: cacheOf(form.cache) });
      setForm(blank);
      projects.reload();
    });
  };
  const selected = projects.data?.find((p) => p.slug === open);
  return (
    <section>
      <h1>Projects</h1>
      <form class="card row" onSubmit={create} aria-label="Create a project">
        <Field label="Project name">
          <input required value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
        </Field>
        <Field label="Slug">
          <input required pattern="[a-z0-9][a-z0-9\-]*" value={form.slug} onInput={(e) => setForm({ ...form, slug: e.currentTarget.value })} />
        </Field>
        <Field label="Models (comma-separated)">
          <input value={form.models} onInput={(e) => setForm({ ...form, models: e.currentTarget.value })} />
        </Field>
        <CacheField value={form.cache} onInput={(cache) => setForm({ ...form, cache })} />
        <button disabled={action.busy}>Create project</button>
      </form>
      <ErrorLine error={action.error ?? projects.error} />
      <Table
        head={["Slug", "Name", "Models", "Timeout", "Cache", "Your role", ""]}
        rows={(projects.data ?? []).map((p) => [
          p.slug,
          p.name,
          p.models.join(" → "),
          `${p.defaultTimeoutMs} ms`,
          cacheText(p.cache) || "none",
          p.role,
          <button type="button" onClick={() => setOpen(p.slug)} aria-label={`Open ${p.slug}`}>
            Open
          </button>,
        ])}
        empty="No projects yet."
      />
      {selected && <ProjectDetail key={selected.slug} project={selected} changed={projects.reload} />}
    </section>
  );
}
