// A secret the API shows once, with a copy button; and the form that creates a named token (with
// a response cache of its own, where the token takes one) and shows its secret.
import { useState } from "preact/hooks";
import { CacheField, ErrorLine, Field, cacheOf, useAction, type Cache } from "./ui";

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

/** A form creating a token by name; `create` returns its secret, shown once. With `cacheField`
 * (its label, and what a blank one means), it also asks how long to cache the token's answers. */
export function NewToken({
  label,
  create,
  created,
  cacheField,
}: {
  label: string;
  create: (name: string, cache?: Cache) => Promise<string>;
  created: () => void;
  cacheField?: { label: string; blank: string };
}) {
  const [name, setName] = useState("");
  const [cache, setCache] = useState("");
  const [secret, setSecret] = useState<string | null>(null);
  const action = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      setSecret(await create(name, cacheField ? cacheOf(cache) : undefined));
      setName("");
      setCache("");
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
        {cacheField && <CacheField {...cacheField} value={cache} onInput={setCache} />}
        <button disabled={action.busy}>Create token</button>
      </form>
      <ErrorLine error={action.error} />
    </>
  );
}
