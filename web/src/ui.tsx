// Small shared pieces: loading with errors shown (never swallowed), money, dates.
import { useEffect, useState } from "preact/hooks";
import type { ComponentChildren } from "preact";

export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setError(null);
    load()
      .then((d) => live && setData(d))
      .catch((e: Error) => live && setError(e.message));
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

export function ErrorLine({ error }: { error: string | null }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

/** Runs an action, showing its error in place. */
export function useAction() {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const run = async (action: () => Promise<void>) => {
    setError(null);
    setBusy(true);
    try {
      await action();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, run };
}

export const dollars = (v: number | null | undefined) => (v == null ? "" : `$${v.toFixed(v !== 0 && Math.abs(v) < 0.01 ? 6 : 2)}`);

export const day = (offset = 0) => new Date(Date.now() + offset * 86400000).toISOString().slice(0, 10);

export function Field({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <label class="field">
      <span>{label}</span>
      {children}
    </label>
  );
}

export function Table({ head, rows, empty = "Nothing yet." }: { head: string[]; rows: ComponentChildren[][]; empty?: string }) {
  if (rows.length === 0) return <p class="muted">{empty}</p>;
  return (
    <table>
      <thead>
        <tr>
          {head.map((h) => (
            <th scope="col">{h}</th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr>
            {r.map((c) => (
              <td>{c}</td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The response cache a key, project or token opted into, as the API gives and takes it. */
export interface Cache {
  ttl: number;
  mode: string;
}

/** "cache 300 s", or "" with no cache. */
export const cacheText = (cache?: Cache | null) => (cache ? `cache ${cache.ttl} s` : "");

/** The cache a seconds field asks for: none when blank (the API checks the range). */
export const cacheOf = (seconds: string): Cache | undefined => (seconds.trim() === "" ? undefined : { ttl: Number(seconds), mode: "exact" });

/** A field of how long answers are cached, in seconds; `blank` says what an empty one means. */
export function CacheField({
  label = "Cache answers for (seconds)",
  blank = "blank: no cache",
  value,
  onInput,
}: {
  label?: string;
  blank?: string;
  value: string;
  onInput: (v: string) => void;
}) {
  return (
    <Field label={label}>
      <input type="number" min={1} step={1} placeholder={blank} value={value} onInput={(e) => onInput(e.currentTarget.value)} />
    </Field>
  );
}
