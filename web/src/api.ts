// The dashboard's client of the public JSON API, like any other client. The session (the
// access token and the rotating refresh token) lives in localStorage; as the management seed
// says of the dashboard, any 401 is retried once after a refresh, and the rotated refresh
// token is kept at once (the old one stops working when used).

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    /** The request field it is about, when the API names one (`deployments[0].weight`). */
    public param: string | null = null,
  ) {
    super(message);
  }
}

const SESSION = "tollgate.session";

export interface Session {
  token: string;
  refreshToken: string;
  email: string;
}

export function session(): Session | null {
  const raw = localStorage.getItem(SESSION);
  return raw ? (JSON.parse(raw) as Session) : null;
}

export function keepSession(s: Session | null) {
  if (s) localStorage.setItem(SESSION, JSON.stringify(s));
  else localStorage.removeItem(SESSION);
  window.dispatchEvent(new Event("tollgate-session"));
}

async function errorOf(resp: Response): Promise<ApiError> {
  try {
    const body = await resp.json();
    if (body?.error?.message) return new ApiError(resp.status, body.error.code ?? "", body.error.message, body.error.param ?? null);
  } catch {
    // Not JSON: say what we know.
  }
  return new ApiError(resp.status, "", `the server answered HTTP ${resp.status}`);
}

async function send(method: string, path: string, token: string | null, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token) headers["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

/** A call without a session (setup, login). */
export async function publicCall<T>(method: string, path: string, body?: unknown): Promise<T> {
  const resp = await send(method, path, null, body);
  if (!resp.ok) throw await errorOf(resp);
  return (await resp.json()) as T;
}

export async function login(email: string, password: string) {
  const answer = await publicCall<{ token: string; refreshToken: string }>("POST", "/api/auth/login", { email, password });
  keepSession({ token: answer.token, refreshToken: answer.refreshToken, email });
}

/** The sign-in page's single sign-on offer (`GET /api/auth/oidc/status`). */
export interface SsoStatus {
  enabled: boolean;
  displayName: string | null;
  loginUrl: string | null;
  passwordLogin: "enabled" | "break_glass_only";
}

/**
 * Finishes a single sign-on the callback sent the browser back from: `?sso_code=` becomes a
 * session, `?sso_error=` is returned to show. Either is taken out of the address bar at once
 * (the code works once, and must not stay in the history).
 */
export async function finishSso(): Promise<string | null> {
  const params = new URLSearchParams(location.search);
  const code = params.get("sso_code");
  const error = params.get("sso_error");
  if (!code && !error) return null;
  params.delete("sso_code");
  params.delete("sso_error");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  if (error) return error;
  try {
    const answer = await publicCall<{ token: string; refreshToken: string; user: { email: string } }>("POST", "/api/auth/oidc/exchange", { code });
    keepSession({ token: answer.token, refreshToken: answer.refreshToken, email: answer.user.email });
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

async function refresh(s: Session): Promise<Session | null> {
  const resp = await send("POST", "/api/auth/refresh", null, { refreshToken: s.refreshToken });
  if (!resp.ok) {
    keepSession(null);
    return null;
  }
  const answer = await resp.json();
  const fresh = { token: answer.token, refreshToken: answer.refreshToken, email: s.email };
  keepSession(fresh);
  return fresh;
}

// One refresh at a time: a page's parallel calls that all meet a 401 share it, since a refresh
// token works once.
let refreshing: Promise<Session | null> | null = null;

function refreshOnce(s: Session): Promise<Session | null> {
  if (!refreshing) refreshing = refresh(s).finally(() => (refreshing = null));
  return refreshing;
}

interface ApiDocument {
  components: { schemas: Record<string, { enum?: string[]; properties?: Record<string, { enum?: string[] }> }> };
}

// The server's API document, read once per page load (again after a failed read).
let apiDocument: Promise<ApiDocument> | null = null;

/** The names a schema of the server's API document (/openapi.json) allows: its own enum, or
 * `property`'s. The dashboard keeps no lists of its own of what the server defines. */
export async function schemaEnum(schema: string, property?: string): Promise<string[]> {
  if (!apiDocument) apiDocument = publicCall<ApiDocument>("GET", "/openapi.json").catch((e) => ((apiDocument = null), Promise.reject(e)));
  const found = (await apiDocument).components.schemas[schema];
  return (property ? found?.properties?.[property]?.enum : found?.enum) ?? [];
}

/** A call with the session: a 401 is retried once after a refresh. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const resp = await authorized(method, path, body);
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** A GET with the session whose answer is text (the Prometheus exposition). */
export async function callText(path: string): Promise<string> {
  return (await authorized("GET", path)).text();
}

async function authorized(method: string, path: string, body?: unknown): Promise<Response> {
  let s = session();
  if (!s) throw new ApiError(401, "unauthorized", "Log in first.");
  let resp = await send(method, path, s.token, body);
  if (resp.status === 401) {
    // Another call may have refreshed already while this one was out.
    const current = session();
    s = current && current.token !== s.token ? current : await refreshOnce(s);
    if (!s) throw new ApiError(401, "unauthorized", "Your session has ended: log in again.");
    resp = await send(method, path, s.token, body);
  }
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

export function logout() {
  keepSession(null);
}

/** One group of `GET /api/usage/summary`. */
export interface UsageGroup {
  key: string | null;
  requestCount: number;
  inputTokens: number;
  outputTokens: number;
  cost: number;
}
