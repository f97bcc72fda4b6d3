import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { finishSso, logout, publicCall, session } from "./api";
import { Login, Setup } from "./pages/auth";
import { AcceptInvite, inviteToken } from "./pages/invite";
import { Keys } from "./pages/keys";
import { Models } from "./pages/models";
import { Audit } from "./pages/audit";
import { Operations } from "./pages/operations";
import { Overview } from "./pages/overview";
import { Projects } from "./pages/projects";
import { Providers } from "./pages/providers";
import { SettingsPage } from "./pages/settings";
import { Usage } from "./pages/usage";
import { Workspaces } from "./pages/workspaces";
import "./style.css";

const PAGES: Record<string, { title: string; view: () => preact.JSX.Element }> = {
  overview: { title: "Overview", view: Overview },
  usage: { title: "Usage", view: Usage },
  keys: { title: "API keys", view: Keys },
  models: { title: "Models", view: Models },
  providers: { title: "Providers", view: Providers },
  workspaces: { title: "Workspaces", view: Workspaces },
  projects: { title: "Projects", view: Projects },
  settings: { title: "Settings", view: SettingsPage },
  operations: { title: "Operations", view: Operations },
  audit: { title: "Audit", view: Audit },
};

function route() {
  const name = location.hash.replace(/^#\/?/, "");
  return name in PAGES ? name : "overview";
}

function App() {
  const [page, setPage] = useState(route());
  const [signedIn, setSignedIn] = useState(session() !== null);
  const [configured, setConfigured] = useState<boolean | null>(null);
  const [invite, setInvite] = useState(inviteToken());
  const [loginFirst, setLoginFirst] = useState(false);
  const [ssoError, setSsoError] = useState<string | null>(null);
  const [ssoPending, setSsoPending] = useState(new URLSearchParams(location.search).has("sso_code"));
  useEffect(() => {
    finishSso().then((error) => (setSsoError(error), setSsoPending(false)));
    const onHash = () => (setPage(route()), setInvite(inviteToken()));
    const onSession = () => setSignedIn(session() !== null);
    window.addEventListener("hashchange", onHash);
    window.addEventListener("tollgate-session", onSession);
    publicCall<{ configured: boolean }>("GET", "/api/setup/status").then((s) => setConfigured(s.configured), () => setConfigured(true));
    return () => {
      window.removeEventListener("hashchange", onHash);
      window.removeEventListener("tollgate-session", onSession);
    };
  }, []);
  if (configured === null || ssoPending) return <p>Loading…</p>;
  if (invite && (signedIn || !loginFirst)) return <AcceptInvite token={invite} wantLogin={() => setLoginFirst(true)} />;
  if (!signedIn) return configured ? <Login done={() => setSignedIn(true)} ssoError={ssoError} /> : <Setup done={() => (setConfigured(true), setSignedIn(true))} />;
  const View = PAGES[page].view;
  return (
    <>
      <nav aria-label="Sections">
        <strong>Tollgate</strong>
        {Object.entries(PAGES).map(([name, p]) => (
          <a href={`#/${name}`} aria-current={name === page ? "page" : undefined}>
            {p.title}
          </a>
        ))}
        <span class="grow" />
        <span class="muted">{session()?.email}</span>
        <button type="button" onClick={logout}>
          Log out
        </button>
      </nav>
      <main>
        <View />
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
