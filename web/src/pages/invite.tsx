// Accepting a workspace invite from its link (`/?invite_token=...`): a new person chooses a
// password (the invite creates their account); someone with an account joins with their session.
import { useState } from "preact/hooks";
import { call, login, publicCall, session } from "../api";
import { ErrorLine, Field, useAction } from "../ui";

/** The invite token of the link the page was opened with, if any. */
export function inviteToken(): string | null {
  return new URLSearchParams(location.search).get("invite_token");
}

function leaveInvite() {
  history.replaceState(null, "", `${location.pathname}#/workspaces`);
  window.dispatchEvent(new Event("hashchange"));
}

export function AcceptInvite({ token, wantLogin }: { token: string; wantLogin: () => void }) {
  const [password, setPassword] = useState("");
  const action = useAction();
  const signedIn = session() !== null;
  const accept = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      if (signedIn) {
        await call("POST", "/api/invite-user/accept", { token });
      } else {
        const joined = await publicCall<{ email: string }>("POST", "/api/invite-user/accept", { token, password });
        await login(joined.email, password);
      }
      leaveInvite();
    });
  };
  return (
    <form class="card narrow" onSubmit={accept}>
      <h1>Join a workspace</h1>
      {signedIn ? (
        <p>You were invited to a workspace. Join it as {session()?.email}?</p>
      ) : (
        <>
          <p>You were invited to a workspace. Choose a password for your new account.</p>
          <Field label="New password">
            <input type="password" required minLength={12} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          </Field>
        </>
      )}
      <ErrorLine error={action.error} />
      <button disabled={action.busy}>Join the workspace</button>
      {!signedIn && (
        <button type="button" onClick={wantLogin}>
          I have an account: log in first
        </button>
      )}
    </form>
  );
}
