// The console's only way to the server: the REST API under /api/v1, with
// the access token in memory and the rotating refresh token in this tab's
// sessionStorage (a reload keeps the session; closing the tab ends it).
// An expired access token is refreshed silently; when the refresh token is
// gone too, `reauth` asks for the password in a dialog over the page, so
// nothing typed is lost, and the request is sent again.

const BASE = '/api/v1';
const REFRESH_KEY = 'fieldsync.refresh';
const USER_KEY = 'fieldsync.username';

let access = null;
let refreshing = null;
let reauth = async () => { throw new ApiError(401, 'signed_out', 'signed out'); };

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function onReauth(fn) { reauth = fn; }
export const signedInAs = () => sessionStorage.getItem(USER_KEY);
export const hasSession = () => !!sessionStorage.getItem(REFRESH_KEY);

function keep(tokens, username) {
  access = tokens.access_token;
  sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  if (username) sessionStorage.setItem(USER_KEY, username);
}

async function errorOf(res) {
  let code = 'http_' + res.status;
  let message = res.statusText || 'request failed';
  try {
    const body = await res.json();
    if (body?.error) ({ code, message } = body.error);
  } catch { /* not JSON */ }
  return new ApiError(res.status, code, message);
}

export async function login(username, password) {
  const res = await fetch(`${BASE}/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw await errorOf(res);
  keep(await res.json(), username);
}

export async function logout() {
  const refresh_token = sessionStorage.getItem(REFRESH_KEY);
  sessionStorage.removeItem(REFRESH_KEY);
  access = null;
  if (refresh_token) {
    await fetch(`${BASE}/auth/logout`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token }),
    }).catch(() => {});
  }
}

/** New tokens from the refresh token; one refresh at a time. */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const refresh_token = sessionStorage.getItem(REFRESH_KEY);
      if (!refresh_token) throw new ApiError(401, 'signed_out', 'signed out');
      const res = await fetch(`${BASE}/auth/refresh`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token }),
      });
      if (!res.ok) {
        if (res.status === 401) sessionStorage.removeItem(REFRESH_KEY);
        throw await errorOf(res);
      }
      keep(await res.json());
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** A valid access token: refreshed, or signed in again, when needed. */
export async function token() {
  if (!access) {
    try { await refresh(); } catch (e) { if (e.status !== 401) throw e; await reauth(); }
  }
  return access;
}

/**
 * One API call. `body` is sent as JSON; `ifMatch` as If-Match. Answers
 * JSON (or text for other media types); errors throw ApiError.
 */
export async function api(method, path, { body, ifMatch, raw = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Authorization: `Bearer ${await token()}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (ifMatch) headers['If-Match'] = ifMatch;
    const res = await fetch(BASE + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401 && attempt < 2) {
      access = null; // expired or revoked: refresh (or sign in) and resend
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    if (raw) return res;
    if (res.status === 204) return null;
    const type = res.headers.get('Content-Type') || '';
    const value = type.includes('json') ? await res.json() : await res.text();
    if (res.headers.get('ETag')) return Object.defineProperty(value, 'etag', { value: res.headers.get('ETag') });
    return value;
  }
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, { body: body ?? {} });
export const put = (path, body, ifMatch) => api('PUT', path, { body, ifMatch });

/** `?a=1&b=2` from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== undefined && v !== null) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Every item of a paged list (follows next_cursor, at most `max` items). */
export async function all(path, params = {}, max = 2000) {
  const out = [];
  let cursor;
  do {
    const page = await get(path + qs({ ...params, cursor }));
    out.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}

/** A blob (photo, signature) as an object URL, fetched with the token. */
export async function blobUrl(sha256, docId) {
  // The hash comes from a synced document: anything but a SHA-256 name
  // would make this page request another URL with the user's token.
  if (!/^[0-9a-f]{64}$/.test(String(sha256))) throw new ApiError(400, 'bad_hash', 'not an attachment hash');
  const res = await api('GET', `/blobs/${sha256}${qs({ doc: docId })}`, { raw: true });
  return URL.createObjectURL(await res.blob());
}

/**
 * Live ticket changes (server-sent events read with fetch, so the token
 * goes in a header, not the URL). Calls `onTicket(docId, kind)` per
 * committed change (kind `ticket`) or rewritten SLA state (kind `sla`; docId
 * null after a sweep of every ticket), and
 * `onResync()` when events may have been missed; reconnects on its own.
 * Returns a function that stops it.
 */
export function liveEvents({ onTicket, onResync, onState }) {
  let stopped = false;
  let ctrl;
  (async () => {
    let delay = 500;
    let first = true;
    while (!stopped) {
      try {
        ctrl = new AbortController();
        const res = await fetch(`${BASE}/events`, {
          headers: { Authorization: `Bearer ${await token()}`, Accept: 'text/event-stream' },
          signal: ctrl.signal,
        });
        if (res.status === 401) { access = null; continue; }
        if (!res.ok) throw await errorOf(res);
        onState?.('live');
        const opened = Date.now();
        if (!first) onResync?.(); // changes while disconnected
        first = false;
        delay = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          // The server writes at least every 15 s; silence for 45 s means a
          // dead connection that never said so: drop it and reconnect.
          const watchdog = setTimeout(() => ctrl.abort(), 45000);
          const { value, done } = await reader.read().finally(() => clearTimeout(watchdog));
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message'; let data = '';
            for (const line of frame.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (event === 'ticket') onTicket(JSON.parse(data).doc_id, 'ticket');
            else if (event === 'sla') onTicket(JSON.parse(data).doc_id ?? null, 'sla');
            else if (event === 'resync') onResync?.();
            else if (event === 'expired') access = null;
          }
        }
        // The server ended the stream (its token's lifetime): reconnect at
        // once, unless it keeps ending at once.
        if (Date.now() - opened > 1000) continue;
      } catch (e) {
        if (stopped) return;
        onState?.('offline');
      }
      if (!stopped) {
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10000);
      }
    }
  })();
  return () => { stopped = true; ctrl?.abort(); };
}
