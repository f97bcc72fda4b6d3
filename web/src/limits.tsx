// An editor of limits as the API takes them: metric, limit, window (calendar or rolling) and
// mode, one row each.
import { Field } from "./ui";

export type Window = string | { rolling: { every: number; unit: string } };
export interface Limit {
  metric: string;
  limit: number;
  window: Window;
  mode?: string;
}

const METRICS = ["cost", "calls", "input_tokens", "output_tokens", "total_tokens"];
const WINDOWS = ["hourly", "daily", "weekly", "monthly", "yearly", "never", "rolling:1:minute", "rolling:1:hour", "rolling:1:day"];
const MODES = ["replace", "extend", "disable"];

const windowText = (w: Window) => (typeof w === "string" ? w : `rolling:${w.rolling.every}:${w.rolling.unit}`);
function windowOf(text: string): Window {
  const [kind, every, unit] = text.split(":");
  return kind === "rolling" ? { rolling: { every: Number(every), unit } } : text;
}

export function LimitsEditor({ limits, onChange }: { limits: Limit[]; onChange: (l: Limit[]) => void }) {
  const set = (i: number, patch: Partial<Limit>) => onChange(limits.map((l, j) => (i === j ? { ...l, ...patch } : l)));
  return (
    <fieldset class="limits">
      <legend>Limits</legend>
      {limits.map((l, i) => (
        <div class="row" key={i}>
          <Field label={`Metric ${i + 1}`}>
            <select value={l.metric} onChange={(e) => set(i, { metric: e.currentTarget.value })}>
              {METRICS.map((m) => (
                <option value={m}>{m}</option>
              ))}
            </select>
          </Field>
          <Field label={`Limit ${i + 1} (${l.metric === "cost" ? "dollars" : "count"})`}>
            <input type="number" step="any" min={0} value={l.limit} onInput={(e) => set(i, { limit: Number(e.currentTarget.value) })} />
          </Field>
          <Field label={`Window ${i + 1}`}>
            <select value={windowText(l.window)} onChange={(e) => set(i, { window: windowOf(e.currentTarget.value) })}>
              {[...new Set([...WINDOWS, windowText(l.window)])].map((w) => (
                <option value={w}>{w.replace(/^rolling:(\d+):/, "rolling $1 ")}</option>
              ))}
            </select>
          </Field>
          <Field label={`Mode ${i + 1}`}>
            <select value={l.mode ?? "replace"} onChange={(e) => set(i, { mode: e.currentTarget.value })}>
              {MODES.map((m) => (
                <option value={m}>{m}</option>
              ))}
            </select>
          </Field>
          <button type="button" class="danger" onClick={() => onChange(limits.filter((_, j) => j !== i))} aria-label={`Remove limit ${i + 1}`}>
            Remove
          </button>
        </div>
      ))}
      <button type="button" onClick={() => onChange([...limits, { metric: "cost", limit: 10, window: "monthly", mode: "replace" }])}>
        Add a limit
      </button>
    </fieldset>
  );
}
