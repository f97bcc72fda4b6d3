// Spend today and this month (against each key's budget), requests, errors and top models.
import { call, type UsageGroup as Group } from "../api";
import { DailyChart } from "../chart";
import { ErrorLine, Table, day, dollars, useLoad } from "../ui";

interface Grouped {
  groups: Group[];
  total: Group;
}
interface Key {
  id: string;
  name: string;
  budget_limit_cents: number | null;
  revoked_at: string | null;
}

export function Overview() {
  const from = day(-29);
  const monthStart = `${day().slice(0, 8)}01`;
  const load = useLoad(async () => {
    const [byDay, byModel, byToken, errors, keys] = await Promise.all([
      call<Grouped>("GET", `/api/usage/summary?group_by=day&from=${from}`),
      call<Grouped>("GET", `/api/usage/summary?group_by=model&from=${from}`),
      call<Grouped>("GET", `/api/usage/summary?group_by=token&from=${monthStart}`),
      call<{ records: unknown[]; hasMore: boolean }>("GET", `/api/usage?outcome=error&from=${day()}&limit=1000`),
      call<{ data: Key[] }>("GET", "/admin/v1/me/api-keys?limit=1000"),
    ]);
    return { byDay, byModel, byToken, errors, keys };
  });
  const d = load.data;
  if (!d) return <ErrorLine error={load.error} />;
  const days = Array.from({ length: 30 }, (_, i) => day(i - 29));
  const at = (g: Grouped, k: string) => g.groups.find((x) => x.key === k);
  const today = at(d.byDay, day());
  const month = d.byDay.groups.filter((g) => (g.key ?? "") >= monthStart).reduce((s, g) => s + g.cost, 0);
  const spent = new Map(d.byToken.groups.map((g) => [g.key, g.cost]));
  const top = [...d.byModel.groups].sort((a, b) => b.cost - a.cost).slice(0, 5);
  return (
    <section>
      <h1>Overview</h1>
      <ErrorLine error={load.error} />
      <div class="tiles">
        <div class="tile"><span>Spend today</span><strong>{dollars(today?.cost ?? 0)}</strong></div>
        <div class="tile"><span>Spend this month</span><strong>{dollars(month)}</strong></div>
        <div class="tile"><span>Requests today</span><strong>{today?.requestCount ?? 0}</strong></div>
        <div class="tile"><span>Errors today</span><strong>{d.errors.records.length}{d.errors.hasMore ? "+" : ""}</strong></div>
      </div>
      <DailyChart title="Spend per day ($)" days={days} series={[{ label: "spend", color: "#2563eb", values: days.map((x) => at(d.byDay, x)?.cost ?? 0) }]} />
      <DailyChart title="Requests per day" days={days} series={[{ label: "requests", color: "#16a34a", values: days.map((x) => at(d.byDay, x)?.requestCount ?? 0) }]} />
      <h2>Top models (30 days)</h2>
      <Table head={["Model", "Requests", "Cost"]} rows={top.map((g) => [g.key ?? "", g.requestCount, dollars(g.cost)])} />
      <h2>Your keys this month</h2>
      <Table
        head={["Key", "Spent", "Budget"]}
        rows={d.keys.data
          .filter((k) => !k.revoked_at)
          .map((k) => [k.name, dollars(spent.get(k.id) ?? 0), k.budget_limit_cents == null ? "none" : dollars(k.budget_limit_cents / 100)])}
      />
    </section>
  );
}
