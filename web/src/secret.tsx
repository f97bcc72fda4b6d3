// A secret the API shows once, with a copy button; and the form that creates a named token and
// shows its secret.
import { useState } from "preact/hooks";
import { ErrorLine, Field, useAction } from "./ui";

export function Secret({ secret, close }: { secret: string; close: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="card secret" role="status">
      <p>This secret is shown once. Copy it now; it cannot be shown again.</p>
      <code data-testid="secret">{secret}</code>
      <button
        type="button"
        onClick={async () => {
          await navigator.clipboard?.writeText(secret).catch(() => undefined);
          setCopied(true);
        }}
      >
        {copied ? "Copied" : "Copy"}
      </button>
      <button type="button" onClick={close}>
        Done
      </button>
    </div>
  );
}

/** A form creating a token by name; `create` returns its secret, shown once. */
export function NewToken({ label, create, created }: { label: string; create: (name: string) => Promise<string>; created: () => void }) {
  const [name, setName] = useState("");
  const [secret, setSecret] = useState<string | null>(null);
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      setSecret(await create(name));
      setName("");
      created();
    });
  };
  return (
    <>
      {secret && <Secret secret={secret} close={() => setSecret(null)} />}
      <form class="row" onSubmit={submit} aria-label={label}>
        <Field label="Token name">
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <button disabled={action.busy}>Create token</button>
      </form>
      <ErrorLine error={action.error} />
    </>
  );
}
