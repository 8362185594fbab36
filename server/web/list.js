// The sessions list (#/).

import { applyEvent, applyStored, errorBox, follow, getJson, sessionPath } from './api.js';
import { sessionLink } from './links.js';
import { bar, el, framesText, progressOf, setBar, statusClass, statusLabel, text, when } from './dom.js';

/**
 * The sessions list in `root`, newest first, kept up to date from the server's event stream.
 * Returns the function that stops it.
 */
export function listPage(root) {
  document.title = 'Sessions – referee';
  const sessions = new Map();
  const rows = new Map();
  const tbody = el('tbody');
  const count = el('span', { class: 'count' });
  const problem = el('div', { hidden: true });
  const empty = el('p', { class: 'empty', hidden: true },
    'No sessions yet. Stream one with ',
    el('code', null, 'referee-client ' + location.origin + ' --video FILE --signal FILE'),
    ' and it shows up here at once.');
  const table = el('table', { class: 'sessions' },
    el('thead', null, el('tr', null,
      ...['Session', 'Status', 'Frames', 'Progress', 'Created'].map((h) => el('th', null, h)))),
    tbody);
  const wrap = el('div', { class: 'card table-wrap', hidden: true }, table);
  root.append(el('div', { class: 'page-head' }, el('h1', null, 'Sessions'), count), problem, wrap, empty);
  let loaded = false;

  function created(s) { return Date.parse(text(s.created_at)) || 0; }

  function rowOf(id) {
    let row = rows.get(id);
    if (row) return row;
    const link = el('a', { href: sessionLink(id) });
    const idText = el('span', { class: 'id' });
    const camera = el('span', { class: 'camera-tag', hidden: true });
    const status = el('span');
    const error = el('span', { class: 'error-text', hidden: true });
    const frames = el('td', { class: 'num', 'data-label': 'Frames' });
    const progress = bar();
    const progressLabel = el('span', { class: 'bar-label' });
    const createdCell = el('td', { class: 'when', 'data-label': 'Created' });
    const tr = el('tr', { class: 'session', 'data-id': id },
      el('td', { class: 'name' }, link, camera, idText),
      el('td', { 'data-label': 'Status' }, status, error),
      frames,
      el('td', { class: 'progress', 'data-label': 'Progress' }, progress, progressLabel),
      createdCell);
    tr.addEventListener('click', (e) => {
      if (!e.target.closest('a')) location.hash = link.getAttribute('href');
    });
    row = { tr, link, idText, camera, status, error, frames, progress, progressLabel, createdCell };
    rows.set(id, row);
    // Newest first.
    const mine = created(sessions.get(id) || {});
    const before = [...tbody.children].find((other) => {
      const s = sessions.get(other.dataset.id);
      return s && created(s) < mine;
    });
    tbody.insertBefore(tr, before || null);
    return row;
  }

  function render(id) {
    const s = sessions.get(id);
    if (!s) return;
    const row = rowOf(id);
    row.link.textContent = text(s.name) || id;
    row.idText.textContent = id;
    // A camera of a bout recorded by several: which, and how many the bout has.
    const bout = s.bout && typeof s.bout === 'object' ? s.bout : null;
    row.camera.textContent = bout ? 'camera ' + text(bout.camera) + ' of ' + (Array.isArray(bout.cameras) ? bout.cameras.length : '?') : '';
    row.camera.hidden = !bout;
    row.tr.dataset.status = text(s.status);
    row.status.className = statusClass(s.status);
    row.status.textContent = statusLabel(s.status);
    const problemText = ['failed', 'detached', 'abandoned'].includes(s.status) ? text(s.error) : '';
    row.error.textContent = problemText;
    row.error.title = problemText;
    row.error.hidden = !problemText;
    row.frames.textContent = framesText(s);
    const p = progressOf(s);
    setBar(row.progress, p.fraction, p.kind);
    row.progressLabel.textContent = p.label;
    row.createdCell.textContent = when(s.created_at);
  }

  function summarize() {
    const n = sessions.size;
    count.textContent = n === 1 ? '1 session' : n + ' sessions';
    wrap.hidden = n === 0;
    empty.hidden = n !== 0 || !loaded;
  }

  function remove(id) {
    sessions.delete(id);
    const row = rows.get(id);
    if (row) row.tr.remove();
    rows.delete(id);
    summarize();
  }

  async function fetchOne(id) {
    try {
      const stored = await getJson(sessionPath(id));
      const s = sessions.get(id);
      if (!s) return;
      const hadCreated = s.created_at;
      applyStored(s, stored);
      if (hadCreated !== s.created_at && rows.has(id)) {
        // Placed by a guess of its creation time: place it again.
        rows.get(id).tr.remove();
        rows.delete(id);
      }
      render(id);
    } catch (_) { /* the list reload will catch up */ }
  }

  async function reload() {
    const asked = Date.now();
    let list;
    try {
      list = await getJson('api/sessions');
    } catch (err) {
      problem.replaceChildren(errorBox('Cannot list the sessions', err));
      problem.hidden = false;
      return;
    }
    if (stopped) return;
    problem.hidden = true;
    loaded = true;
    const seen = new Set();
    for (const stored of Array.isArray(list.sessions) ? list.sessions : []) {
      if (!stored || typeof stored.id !== 'string') continue;
      seen.add(stored.id);
      const s = sessions.get(stored.id) || { id: stored.id };
      sessions.set(stored.id, s);
      applyStored(s, stored);
      render(stored.id);
    }
    // Gone while we were not listening (deleted, expired), unless an event just told of it.
    for (const [id, s] of [...sessions]) {
      if (!seen.has(id) && !(s.liveAt && s.liveAt >= asked - 1000)) remove(id);
    }
    summarize();
  }

  function onEvent(name, data) {
    if (name === 'lagged') {
      reload();
      return;
    }
    if (!data || typeof data !== 'object' || typeof data.session_id !== 'string') return;
    const id = data.session_id;
    if (name === 'deleted') {
      remove(id);
      return;
    }
    let s = sessions.get(id);
    const fresh = !s;
    if (fresh) {
      s = { id, name: '', created_at: text(data.at) };
      sessions.set(id, s);
    }
    applyEvent(s, data);
    render(id);
    summarize();
    // Events carry the state, not the name or source: ask for them.
    if (fresh || name === 'started' || name === 'complete') fetchOne(id);
  }

  let stopped = false;
  // List now, and again each time the event stream (re)opens: nothing that happened
  // before the stream listened is missed.
  const stream = follow('api/events', null, onEvent, reload);
  reload();
  return () => {
    stopped = true;
    stream.close();
  };
}
