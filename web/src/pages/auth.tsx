// First-admin setup and login: one email-and-password form, and the single sign-on button
// when an identity provider is configured.
import { useEffect, useState } from "preact/hooks";
import { type SsoStatus, keepSession, login, publicCall } from "../api";
import { ErrorLine, Field, useAction } from "../ui";

function CredentialsForm(props: { heading: string; intro?: string; button: string; minLength?: number; submit: (email: string, password: string) => Promise<void> }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    action.run(() => props.submit(email, password));
  };
  return (
    <form class="card narrow" onSubmit={submit}>
      <h1>{props.heading}</h1>
      {props.intro && <p>{props.intro}</p>}
      <Field label="Email">
        <input type="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
      </Field>
      <Field label="Password">
        <input type="password" required minLength={props.minLength} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </Field>
      <ErrorLine error={action.error} />
      <button disabled={action.busy}>{props.button}</button>
    </form>
  );
}

export function Setup({ done }: { done: () => void }) {
  return (
    <CredentialsForm
      heading="Welcome to Tollgate"
      intro="No admin exists yet. Create the first one."
      button="Create the admin"
      minLength={12}
      submit={async (email, password) => {
        const answer = await publicCall<{ token: string; refreshToken: string }>("POST", "/api/setup/first-admin", { email, password });
        keepSession({ token: answer.token, refreshToken: answer.refreshToken, email });
        done();
      }}
    />
  );
}

export function Login({ done, ssoError }: { done: () => void; ssoError: string | null }) {
  const [sso, setSso] = useState<SsoStatus | null>(null);
  useEffect(() => {
    publicCall<SsoStatus>("GET", "/api/auth/oidc/status").then(setSso, () => setSso(null));
  }, []);
  const form = (
    <CredentialsForm
      heading={sso?.enabled ? "Or log in with a password" : "Log in to Tollgate"}
      button="Log in"
      submit={async (email, password) => {
        await login(email, password);
        done();
      }}
    />
  );
  if (!sso?.enabled) {
    return (
      <>
        <ErrorLine error={ssoError} />
        {form}
      </>
    );
  }
  return (
    <>
      <section class="card narrow">
        <h1>Log in to Tollgate</h1>
        <ErrorLine error={ssoError} />
        <a class="button" href={sso.loginUrl ?? "/api/auth/oidc/login"}>
          Sign in with {sso.displayName}
        </a>
      </section>
      {sso.passwordLogin === "break_glass_only" ? (
        <details class="card narrow">
          <summary>Break-glass admin sign-in</summary>
          {form}
        </details>
      ) : (
        form
      )}
    </>
  );
}
