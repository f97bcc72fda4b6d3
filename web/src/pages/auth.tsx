// First-admin setup and login.
import { useState } from "preact/hooks";
import { keepSession, login, publicCall } from "../api";
import { ErrorLine, Field, useAction } from "../ui";

export function Setup({ done }: { done: () => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      const answer = await publicCall<{ token: string; refreshToken: string }>("POST", "/api/setup/first-admin", { email, password });
      keepSession({ token: answer.token, refreshToken: answer.refreshToken, email });
      done();
    });
  };
  return (
    <form class="card narrow" onSubmit={submit}>
      <h1>Welcome to Tollgate</h1>
      <p>No admin exists yet. Create the first one.</p>
      <Field label="Email">
        <input type="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
      </Field>
      <Field label="Password">
        <input type="password" required minLength={12} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </Field>
      <ErrorLine error={action.error} />
      <button disabled={action.busy}>Create the admin</button>
    </form>
  );
}

export function Login({ done }: { done: () => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      await login(email, password);
      done();
    });
  };
  return (
    <form class="card narrow" onSubmit={submit}>
      <h1>Log in to Tollgate</h1>
      <Field label="Email">
        <input type="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
      </Field>
      <Field label="Password">
        <input type="password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </Field>
      <ErrorLine error={action.error} />
      <button disabled={action.busy}>Log in</button>
    </form>
  );
}
