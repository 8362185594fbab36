// The dashboard's side of the HTTP API: the access token, requests, errors, and the event
// streams (Server-Sent Events) that keep a page up to date.

import { el, text } from './dom.js';

const TOKEN_KEY = 'referee.token';
const EVENT_NAMES = ['state', 'created', 'started', 'frames', 'ended', 'progress', 'complete',
  'failed', 'detached', 'resumed', 'abandoned', 'deleted', 'lagged', 'not_found'];
/** The live fields of a session that events carry. */
const LIVE_FIELDS = ['status', 'frames_stored', 'bytes_stored', 'frames_expected', 'stage',
  'percent', 'error'];

// ---------------------------------------------------------------- token

let token = null;

function storedToken() {
  try { return localStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
}

function setToken(value) {
  token = value ? value : null;
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* storage disabled: keep it for this page only */ }
  showToken();
}

/** Takes `?token=` from the page's URL into storage, and out of the address bar. */
export function takeTokenFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has('token')) {
    token = storedToken();
    showToken();
    return;
  }
  setToken(params.get('token'));
  params.delete('token');
  const query = params.toString();
  history.replaceState(null, '', location.pathname + (query ? '?' + query : '') + location.hash);
}

function showToken() {
  const details = document.getElementById('token');
  const summary = document.getElementById('token-summary');
  const input = document.getElementById('token-input');
  if (!details || !summary || !input) return;
  details.classList.toggle('set', Boolean(token));
  summary.textContent = token ? 'Token ✓' : 'Token';
  input.value = token || '';
}

/** The token form in the header; `onChange()` after a token is saved or forgotten. */
export function setupTokenForm(onChange) {
  const details = document.getElementById('token');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const clear = document.getElementById('token-clear');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    details.open = false;
    onChange();
  });
  clear.addEventListener('click', () => {
    setToken(null);
    details.open = false;
    onChange();
  });
}

/** The URL of API `path` (relative to the page), with `params` and the token. */
export function url(path, params) {
  const u = new URL(path, document.baseURI);
  u.hash = '';
  if (params) for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
  if (token) u.searchParams.set('token', token);
  return u.href;
}

export function sessionPath(id, rest) {
  return 'api/sessions/' + encodeURIComponent(id) + (rest ? '/' + rest : '');
}

// ---------------------------------------------------------------- HTTP

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function getJson(path, params) {
  let response;
  try {
    response = await fetch(url(path, params), { headers: { Accept: 'application/json' }, cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, 'cannot reach the server (' + err.message + ')');
  }
  if (!response.ok) {
    let message = response.status + ' ' + response.statusText;
    try {
      const body = await response.json();
      if (body && typeof body.message === 'string') message = body.message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

/** An alert box explaining `err`; for a missing or wrong token, where to give one. */
export function errorBox(what, err) {
  const box = el('div', { class: 'alert error', role: 'alert' }, el('h2', null, what));
  box.append(el('p', { class: 'error-text' }, err.message));
  if (err.status === 401 || err.status === 403) {
    box.append(el('p', null, err.status === 401
      ? 'This server needs a valid access token: enter it under “Token” at the top, or open the dashboard with ?token=TOKEN.'
      : 'This token may not do that: ask for a token with the watch scope.'));
    const details = document.getElementById('token');
    if (details) details.open = true;
  }
  return box;
}

// ---------------------------------------------------------------- a session, from events and the API

/** Copies the live fields of event `data` into session `s`, remembering when. */
export function applyEvent(s, data) {
  for (const key of LIVE_FIELDS) if (key in data) s[key] = data[key];
  s.updated_at = text(data.at) || s.updated_at;
  s.liveAt = Date.parse(text(data.at)) || Date.now();
}

/** Merges a session as the API returned it into `s`, unless an event was newer. */
export function applyStored(s, stored) {
  const storedAt = Date.parse(text(stored.updated_at)) || 0;
  const keepLive = s.liveAt && s.liveAt > storedAt;
  for (const [key, value] of Object.entries(stored)) {
    if (keepLive && LIVE_FIELDS.includes(key)) continue;
    s[key] = value;
  }
}

// ---------------------------------------------------------------- live updates

function setConnection(state) {
  const node = document.getElementById('connection');
  if (!node) return;
  const labels = { live: 'live', reconnecting: 'reconnecting…', offline: 'offline: retrying', idle: '' };
  node.className = 'connection ' + state;
  node.textContent = labels[state] || '';
}

/**
 * Follows the Server-Sent Events at `path`: `onEvent(name, data)` for each (data parsed as
 * JSON when it is), `onOpen()` on every (re)connection. The browser reconnects after a
 * network error; after an HTTP error it gives up, and this tries again with backoff.
 */
export function follow(path, params, onEvent, onOpen) {
  let source = null;
  let closed = false;
  let retry = null;
  let delay = 1000;
  function open() {
    source = new EventSource(url(path, params));
    source.onopen = () => {
      delay = 1000;
      setConnection('live');
      if (onOpen) onOpen();
    };
    source.onerror = () => {
      if (closed) return;
      if (source.readyState === EventSource.CLOSED) {
        setConnection('offline');
        retry = setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      } else {
        setConnection('reconnecting');
      }
    };
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (e) => {
        if (closed) return;
        let data;
        try { data = JSON.parse(e.data); } catch (_) { data = e.data; }
        onEvent(name, data);
      });
    }
  }
  open();
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      if (source) source.close();
      setConnection('idle');
    },
  };
}
