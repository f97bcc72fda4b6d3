// Operations: the figures /metrics holds (the same Prometheus exposition an operator scrapes),
// read every few seconds; rates and latency quantiles are taken over the last interval.
import { useEffect, useState } from "preact/hooks";
import { callText } from "../api";
import { ErrorLine, Table } from "../ui";

const EVERY_MS = 5000;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Reading {
  at: number;
  samples: Sample[];
}

/** Prometheus's text format: `name{label="value",...} number` per line, comments skipped. */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function sum(r: Reading, name: string, keep: (labels: Record<string, string>) => boolean = () => true): number {
  return r.samples.filter((s) => s.name === name && keep(s.labels)).reduce((t, s) => t + s.value, 0);
}

/** The q-quantile of the increase of a histogram's buckets between two readings, interpolated
 * within the bucket as Prometheus's histogram_quantile does. */
function quantile(q: number, before: Reading, now: Reading, name: string, keep: (labels: Record<string, string>) => boolean): number | null {
  const bounds = new Map<number, number>();
  for (const [r, sign] of [[now, 1], [before, -1]] as const) {
    for (const s of r.samples) {
      if (s.name !== `${name}_bucket` || !keep(s.labels)) continue;
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      bounds.set(le, (bounds.get(le) ?? 0) + sign * s.value);
    }
  }
  const buckets = [...bounds.entries()].sort((a, b) => a[0] - b[0]);
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let [lower, below] = [0, 0];
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + (le - lower) * ((rank - below) / Math.max(count - below, 1e-9));
    }
    [lower, below] = [le, count];
  }
  return lower;
}

const ms = (s: number | null) => (s === null ? "—" : `${(s * 1000).toFixed(2)} ms`);

export function Operations() {
  const [readings, setReadings] = useState<Reading[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const read = () =>
      callText("/metrics")
        .then((text) => live && (setError(null), setReadings((r) => [...r.slice(-1), { at: Date.now(), samples: parseExposition(text) }])))
        .catch((e: Error) => live && setError(e.message));
    read();
    const timer = setInterval(read, EVERY_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);
  const now = readings[readings.length - 1];
  const before = readings.length > 1 ? readings[0] : null;
  const requests = "tollgate_proxy_requests_total";
  const failed = (l: Record<string, string>) => l.outcome !== "success";
  const gateway = (l: Record<string, string>) => l.part === "gateway";
  let rows: [string, string][] = [];
  if (now) {
    const seconds = before ? (now.at - before.at) / 1000 : 0;
    const delta = (name: string, keep?: (l: Record<string, string>) => boolean) => (before ? sum(now, name, keep) - sum(before, name, keep) : 0);
    const served = delta(requests);
    rows = [
      ["Requests per second", before ? (served / seconds).toFixed(2) : "measuring…"],
      ["Error rate", before ? (served ? `${((100 * delta(requests, failed)) / served).toFixed(1)}%` : "no requests") : "measuring…"],
      ["Added latency p50", before ? ms(quantile(0.5, before, now, "tollgate_proxy_duration_seconds", gateway)) : "measuring…"],
      ["Added latency p99", before ? ms(quantile(0.99, before, now, "tollgate_proxy_duration_seconds", gateway)) : "measuring…"],
      ["Spend per hour", before ? `$${((delta("tollgate_proxy_cost_microdollars_total") / 1e6 / seconds) * 3600).toFixed(4)}` : "measuring…"],
      ["Requests since start", String(sum(now, requests))],
      ["Spend since start", `$${(sum(now, "tollgate_proxy_cost_microdollars_total") / 1e6).toFixed(6)}`],
      ["Reservations held now", String(sum(now, "tollgate_proxy_reservations_held"))],
    ];
  }
  const refusals = now
    ? now.samples
        .filter((s) => s.name === "tollgate_proxy_refusals_total")
        .sort((a, b) => b.value - a.value)
        .slice(0, 5)
    : [];
  return (
    <section>
      <h1>Operations</h1>
      <p class="muted">This process's figures from /metrics, read every {EVERY_MS / 1000} s; rates cover the last interval.</p>
      <ErrorLine error={error} />
      <Table head={["Figure", "Value"]} rows={rows.map(([k, v]) => [k, v])} empty="Reading /metrics…" />
      <h2>Top refusal reasons</h2>
      <Table head={["Reason", "Level", "Refused since start"]} rows={refusals.map((s) => [s.labels.reason, s.labels.level, String(s.value)])} empty="No refusals." />
    </section>
  );
}
