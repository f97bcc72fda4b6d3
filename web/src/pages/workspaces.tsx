// Workspaces: create, members and invites (an invite gives a link to send when no mail goes
// out), workspace tokens (the secret shown once), revoke.
import { useState } from "preact/hooks";
import { call } from "../api";
import { ErrorLine, Field, Table, dollars, useAction, useLoad } from "../ui";
import { NewToken } from "../secret";

interface Workspace {
  id: string;
  name: string;
  role: string;
}
interface Token {
  id: string;
  name: string;
  key_prefix: string;
  budget_limit: number | null;
  revoked_at: string | null;
  expires_at: string | null;
}

function WorkspaceDetail({ ws }: { ws: Workspace }) {
  const people = useLoad(
    () => call<{ members: { email: string; role: string }[]; invites: { id: string; email: string; role: string; expires_at: string }[] }>("GET", `/api/invite-user?business_id=${ws.id}`),
    [ws.id],
  );
  const tokens = useLoad(() => call<{ tokens: Token[] }>("GET", `/api/tokens?business_id=${ws.id}`), [ws.id]);
  const [invite, setInvite] = useState({ email: "", role: "member" });
  const [link, setLink] = useState<string | null>(null);
  const action = useAction();
  const sendInvite = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      const sent = await call<{ invite: { id: string }; delivered: boolean; delivery_note: string }>("POST", "/api/invite-user", {
        ...invite,
        business_id: ws.id,
        redirect_to: `${location.origin}/`,
      });
      if (sent.delivered) {
        setLink(sent.delivery_note);
      } else {
        // No channel took it: the link, readable once, for the inviter to pass on.
        const made = await call<{ invite_url: string }>("POST", "/api/invite-user/link", { business_id: ws.id, invite_id: sent.invite.id });
        setLink(`Send them this link: ${made.invite_url}`);
      }
      setInvite({ email: "", role: "member" });
      people.reload();
    });
  };
  return (
    <div class="card">
      <h2>Workspace {ws.name}</h2>
      <ErrorLine error={action.error ?? people.error ?? tokens.error} />
      <h3>Members</h3>
      <Table head={["Email", "Role"]} rows={(people.data?.members ?? []).map((m) => [m.email, m.role])} />
      <h3>Pending invites</h3>
      <Table head={["Email", "Role", "Expires"]} rows={(people.data?.invites ?? []).map((i) => [i.email, i.role, i.expires_at.slice(0, 10)])} empty="None." />
      <form class="row" onSubmit={sendInvite} aria-label="Invite someone">
        <Field label="Email to invite">
          <input type="email" required value={invite.email} onInput={(e) => setInvite({ ...invite, email: e.currentTarget.value })} />
        </Field>
        <Field label="Workspace role">
          <select value={invite.role} onChange={(e) => setInvite({ ...invite, role: e.currentTarget.value })}>
            <option value="member">member</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <button>Invite</button>
      </form>
      {link && (
        <p role="status">
          <code>{link}</code>
        </p>
      )}
      <h3>Workspace tokens</h3>
      <Table
        head={["Name", "Prefix", "Budget", "Expires", "State", ""]}
        rows={(tokens.data?.tokens ?? []).map((t) => [
          t.name,
          <code>{t.key_prefix}</code>,
          t.budget_limit == null ? "none" : dollars(t.budget_limit),
          t.expires_at?.slice(0, 10) ?? "never",
          t.revoked_at ? "revoked" : "active",
          t.revoked_at ? (
            ""
          ) : (
            <button type="button" class="danger" aria-label={`Revoke token ${t.name}`} onClick={() => action.run(async () => void (await call("POST", `/api/tokens/${t.id}/revoke`), tokens.reload()))}>
              Revoke
            </button>
          ),
        ])}
      />
      <NewToken label="Create a workspace token" created={tokens.reload} create={async (name) => (await call<{ secret: string }>("POST", "/api/tokens", { name, business_id: ws.id })).secret} />
    </div>
  );
}

export function Workspaces() {
  const list = useLoad(() => call<{ workspaces: Workspace[] }>("GET", "/api/workspaces"));
  const [name, setName] = useState("");
  const [open, setOpen] = useState<string | null>(null);
  const action = useAction();
  const selected = list.data?.workspaces.find((w) => w.id === open);
  return (
    <section>
      <h1>Workspaces</h1>
      <form
        class="card row"
        aria-label="Create a workspace"
        onSubmit={(e) => {
          e.preventDefault();
          action.run(async () => void (await call("POST", "/api/workspaces", { name }), setName(""), list.reload()));
        }}
      >
        <Field label="Workspace name">
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <button disabled={action.busy}>Create workspace</button>
      </form>
      <ErrorLine error={action.error ?? list.error} />
      <Table
        head={["Name", "Your role", ""]}
        rows={(list.data?.workspaces ?? []).map((w) => [
          w.name,
          w.role,
          <button type="button" onClick={() => setOpen(w.id)} aria-label={`Open ${w.name}`}>
            Open
          </button>,
        ])}
        empty="No workspaces yet."
      />
      {selected && <WorkspaceDetail key={selected.id} ws={selected} />}
    </section>
  );
}
