// Single sign-on settings (global admins): the OpenID provider, the redirect URI to register
// with it, and whether password sign-in is left to one break-glass admin. The client secret is
// write-only: the page only says whether one is saved.
import { call } from "../api";
import { ErrorLine, Field, useAction, useLoad } from "../ui";

interface OidcSettings {
  issuer: string | null;
  clientId: string | null;
  hasClientSecret: boolean;
  displayName: string | null;
  extraScopes: string[];
  groupsClaim: string;
  requireVerifiedEmail: boolean;
  passwordLogin: "enabled" | "break_glass_only";
  breakGlassEmail: string | null;
  source: "environment" | "settings";
  redirectUri: string;
}

export function SingleSignOn() {
  const settings = useLoad(() => call<OidcSettings>("GET", "/api/settings/oidc"));
  const action = useAction();
  const s = settings.data;
  if (!s) return <ErrorLine error={settings.error} />;
  const fromEnv = s.source === "environment";
  const submit = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const text = (name: string) => String(form.get(name) ?? "").trim() || undefined;
    const body = {
      issuer: fromEnv ? undefined : text("issuer"),
      clientId: fromEnv ? undefined : text("clientId"),
      clientSecret: fromEnv ? undefined : text("clientSecret"),
      displayName: text("displayName"),
      extraScopes: (text("extraScopes") ?? "").split(/[\s,]+/).filter(Boolean),
      groupsClaim: text("groupsClaim"),
      requireVerifiedEmail: form.get("requireVerifiedEmail") === "on",
      passwordLogin: String(form.get("passwordLogin")),
      breakGlassEmail: text("breakGlassEmail"),
    };
    action.run(async () => void (await call("PUT", "/api/settings/oidc", body), settings.reload()));
  };
  return (
    <form class="card" aria-label="Single sign-on" onSubmit={submit}>
      <h2>Single sign-on</h2>
      <p class="muted">
        Register <code>{s.redirectUri}</code> as the redirect URI with your identity provider.
        {fromEnv && " The provider is set by TOLLGATE_OIDC_* in the environment, which win over what is saved here."}
      </p>
      <ErrorLine error={action.error} />
      <div class="row">
        <Field label="Issuer URL">
          <input name="issuer" type="url" disabled={fromEnv} defaultValue={s.issuer ?? ""} placeholder="https://example.okta.com" />
        </Field>
        <Field label="Client id">
          <input name="clientId" disabled={fromEnv} defaultValue={s.clientId ?? ""} />
        </Field>
        <Field label="Client secret">
          <input name="clientSecret" type="password" autocomplete="off" disabled={fromEnv} placeholder={s.hasClientSecret ? "saved; type to replace" : ""} />
        </Field>
        <Field label="Button name">
          <input name="displayName" defaultValue={s.displayName ?? ""} placeholder="Okta" />
        </Field>
        <Field label="Extra scopes">
          <input name="extraScopes" defaultValue={s.extraScopes.join(" ")} placeholder="groups" />
        </Field>
        <Field label="Groups claim">
          <input name="groupsClaim" defaultValue={s.groupsClaim} />
        </Field>
        <Field label="Require a verified email">
          <input name="requireVerifiedEmail" type="checkbox" defaultChecked={s.requireVerifiedEmail} />
        </Field>
        <Field label="Password sign-in">
          <select name="passwordLogin" defaultValue={s.passwordLogin}>
            <option value="enabled">for everyone</option>
            <option value="break_glass_only">only the break-glass admin</option>
          </select>
        </Field>
        <Field label="Break-glass admin email">
          <input name="breakGlassEmail" type="email" defaultValue={s.breakGlassEmail ?? ""} />
        </Field>
      </div>
      <button disabled={action.busy}>Save single sign-on</button>
    </form>
  );
}
