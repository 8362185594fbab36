// The referee dashboard: the sessions list (#/) and a session's page (#/sessions/ID), both
// kept up to date from the server's event streams. Plain JavaScript, no framework, no build
// step. Every text that comes from the server is put in with textContent or as an attribute
// value, never parsed as markup.
'use strict';

(function () {
  const TOKEN_KEY = 'referee.token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const EVENT_NAMES = ['state', 'created', 'started', 'frames', 'ended', 'progress', 'complete',
    'failed', 'detached', 'resumed', 'abandoned', 'deleted', 'lagged', 'not_found'];
  /** Statuses after which a session's event stream ends. */
  const FINAL = new Set(['complete', 'failed']);
  const STATUS_LABEL = {
    created: 'waiting for upload', receiving: 'receiving', awaiting_signal: 'awaiting signal',
    processing: 'processing', complete: 'complete', failed: 'failed', detached: 'detached',
    abandoned: 'abandoned',
  };
  const STAGES = ['video_reconstruction', 'analysis'];
  const STAGE_LABEL = {
    video_reconstruction: 'Rebuilding the video', analysis: 'Analysing motion and events',
  };
  const STAGE_SHORT = { video_reconstruction: 'video', analysis: 'analysis' };
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
  function takeTokenFromUrl() {
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

  function setupTokenForm() {
    const details = document.getElementById('token');
    const form = document.getElementById('token-form');
    const input = document.getElementById('token-input');
    const clear = document.getElementById('token-clear');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      setToken(input.value.trim());
      details.open = false;
      route();
    });
    clear.addEventListener('click', () => {
      setToken(null);
      details.open = false;
      route();
    });
  }

  /** The URL of API `path` (relative to the page), with `params` and the token. */
  function url(path, params) {
    const u = new URL(path, document.baseURI);
    u.hash = '';
    if (params) for (const [k, v] of Object.entries(params)) u.searchParams.set(k, String(v));
    if (token) u.searchParams.set('token', token);
    return u.href;
  }

  function sessionPath(id, rest) {
    return 'api/sessions/' + encodeURIComponent(id) + (rest ? '/' + rest : '');
  }

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function getJson(path, params) {
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
  function errorBox(what, err) {
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

  // ---------------------------------------------------------------- DOM

  /** An element with attributes (`class`, `data-*`, ...) and children (nodes or text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  // ---------------------------------------------------------------- formatting

  function num(v) { return typeof v === 'number' && Number.isFinite(v) ? v : null; }
  function text(v) { return typeof v === 'string' ? v : ''; }
  function mb(bytes) { return ((num(bytes) || 0) / 1e6).toFixed(1) + ' MB'; }
  function secs(v, digits) { return num(v) === null ? '–' : v.toFixed(digits === undefined ? 3 : digits) + ' s'; }
  function trimFloat(v) { return (num(v) || 0).toFixed(3).replace(/\.?0+$/, ''); }
  function when(iso) {
    const d = new Date(text(iso));
    if (Number.isNaN(d.getTime())) return '–';
    return d.toLocaleString([], {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  }
  function statusClass(status) { return 'status st-' + text(status).replace(/[^a-z_]/g, ''); }
  function statusLabel(status) { return STATUS_LABEL[status] || text(status) || 'unknown'; }

  function framesText(s) {
    const stored = num(s.frames_stored) || 0;
    const expected = num(s.frames_expected);
    return expected ? stored + ' / ' + expected : String(stored);
  }

  /** How far a session is, for a bar: `fraction` (null when unknown), a label and a style. */
  function progressOf(s) {
    const stored = num(s.frames_stored) || 0;
    const expected = num(s.frames_expected);
    const upload = expected ? Math.min(1, stored / expected) : null;
    switch (s.status) {
      case 'created':
        return { fraction: 0, label: 'not started', kind: '' };
      case 'receiving':
      case 'awaiting_signal':
        return {
          fraction: upload,
          label: upload === null ? stored + ' frames' : Math.floor(upload * 100) + '% uploaded',
          kind: '',
        };
      case 'processing': {
        const percent = Math.max(0, Math.min(100, num(s.percent) || 0));
        const index = Math.max(0, STAGES.indexOf(s.stage));
        return {
          fraction: (index + percent / 100) / STAGES.length,
          label: (STAGE_SHORT[s.stage] || 'processing') + ' ' + Math.floor(percent) + '%',
          kind: 'proc',
        };
      }
      case 'complete':
        return { fraction: 1, label: 'done', kind: 'done' };
      default:
        return { fraction: upload === null ? 0 : upload, label: upload === null ? '' : Math.floor(upload * 100) + '% uploaded', kind: 'stopped' };
    }
  }

  function bar(extra) {
    return el('div', {
      class: 'bar' + (extra ? ' ' + extra : ''), role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
    }, el('div', { class: 'fill' }));
  }

  function setBar(node, fraction, kind, extra) {
    node.className = 'bar' + (kind ? ' ' + kind : '') + (extra ? ' ' + extra : '');
    const fill = node.firstChild;
    if (fraction === null) {
      node.classList.add('indeterminate');
      fill.style.width = '';
      node.removeAttribute('aria-valuenow');
    } else {
      const pct = Math.max(0, Math.min(100, fraction * 100));
      fill.style.width = pct.toFixed(1) + '%';
      node.setAttribute('aria-valuenow', pct.toFixed(0));
    }
  }

  /** Copies the live fields of event `data` into session `s`, remembering when. */
  function applyEvent(s, data) {
    for (const key of LIVE_FIELDS) if (key in data) s[key] = data[key];
    s.updated_at = text(data.at) || s.updated_at;
    s.liveAt = Date.parse(text(data.at)) || Date.now();
  }

  /** Merges a session as the API returned it into `s`, unless an event was newer. */
  function applyStored(s, stored) {
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
  function follow(path, params, onEvent, onOpen) {
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

  // ---------------------------------------------------------------- router

  let teardown = null;

  function route() {
    if (teardown) {
      teardown();
      teardown = null;
    }
    const root = document.getElementById('view');
    root.replaceChildren();
    const match = (location.hash || '#/').match(/^#\/sessions\/([^/?#]+)\/?(?:\?([^#]*))?$/);
    if (match) {
      let id = match[1];
      try { id = decodeURIComponent(id); } catch (_) { /* keep it as written */ }
      // `?t=FRAME` opens the replay player at that frame.
      const t = Number(new URLSearchParams(match[2] || '').get('t'));
      teardown = sessionPage(root, id, Number.isInteger(t) && t >= 0 ? t : null);
    } else {
      teardown = listPage(root);
    }
    window.scrollTo(0, 0);
  }

  // ---------------------------------------------------------------- #/ the sessions list

  function listPage(root) {
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
      const link = el('a', { href: '#/sessions/' + encodeURIComponent(id) });
      const idText = el('span', { class: 'id' });
      const status = el('span');
      const error = el('span', { class: 'error-text', hidden: true });
      const frames = el('td', { class: 'num', 'data-label': 'Frames' });
      const progress = bar();
      const progressLabel = el('span', { class: 'bar-label' });
      const createdCell = el('td', { class: 'when', 'data-label': 'Created' });
      const tr = el('tr', { class: 'session', 'data-id': id },
        el('td', { class: 'name' }, link, idText),
        el('td', { 'data-label': 'Status' }, status, error),
        frames,
        el('td', { class: 'progress', 'data-label': 'Progress' }, progress, progressLabel),
        createdCell);
      tr.addEventListener('click', (e) => {
        if (!e.target.closest('a')) location.hash = link.getAttribute('href');
      });
      row = { tr, link, idText, status, error, frames, progress, progressLabel, createdCell };
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

  // ---------------------------------------------------------------- #/sessions/ID

  /** The link to frame `frame` of session `id` in the replay player. */
  function frameLink(id, frame) {
    return '#/sessions/' + encodeURIComponent(id) + '?t=' + frame;
  }

  function sessionPage(root, id, startFrame) {
    document.title = id + ' – referee';
    const s = { id };
    let phase = null;
    let exists = null; // unknown until the API or an event says
    let stream = null;
    let stopped = false;
    let liveImg = null;
    let ui = {};
    /** The first frame count seen while receiving, and when: for the rate. */
    let rateFrom = null;

    const title = el('h1', null, id);
    const badge = el('span', { class: 'status' }, '…');
    const meta = el('p', { class: 'meta' });
    const panel = el('section', { class: 'panel' });
    const replay = el('section', { class: 'replay', hidden: true });
    const results = el('section', { class: 'results' });
    root.append(
      el('nav', { class: 'crumbs' }, el('a', { href: '#/' }, '← All sessions')),
      el('div', { class: 'page-head' }, title, badge),
      meta, panel, replay, results);

    // ---- the replay player, from the stored frames, as soon as there are some
    let player = null;
    let plotRef = null;
    let pendingEvents = null;
    function showPlayer() {
      const stored = num(s.frames_stored) || 0;
      if (!player && stored > 0 && typeof window.RefereePlayer === 'object') {
        player = window.RefereePlayer.create({
          frames: {
            url: (i) => url(sessionPath(id, 'frames/' + i + '.jpg')),
            times: (from, count) => getJson(sessionPath(id, 'frames'), { from, count }),
          },
          start: startFrame === null ? 0 : startFrame,
          onFrame(frame, seconds) {
            // The address names the frame on screen: copy it to share this very frame.
            if (!stopped && location.hash.startsWith('#/sessions/')) history.replaceState(null, '', frameLink(id, frame));
            if (plotRef && seconds !== null) plotRef.setTime(seconds);
          },
        });
        replay.replaceChildren(el('h2', null, 'Replay'), player.node,
          el('p', { class: 'hint' }, '← → one frame · space play/pause · J K L · [ ] touches · A loop · ? keys'));
        if (pendingEvents) player.setEvents(pendingEvents);
      }
      replay.hidden = !player || phase === 'missing' || phase === 'appearing';
      if (player) player.setLive(s.status === 'receiving' || s.status === 'awaiting_signal');
    }

    function phaseOf() {
      if (exists === false) return 'missing';
      switch (s.status) {
        case undefined: case null: return exists ? 'loading' : 'appearing';
        case 'created': return 'waiting';
        case 'receiving': case 'awaiting_signal': return 'receiving';
        default: return s.status;
      }
    }

    function stopLive() {
      if (liveImg) {
        // Ends the MJPEG request.
        liveImg.removeAttribute('src');
        liveImg = null;
      }
    }

    function build(next) {
      stopLive();
      ui = {};
      panel.replaceChildren();
      const frames = num(s.frames_stored) || 0;
      switch (next) {
        case 'appearing':
          panel.append(el('div', { class: 'card' },
            el('h2', null, 'Waiting for this session'),
            el('p', null, 'There is no session ' + id + ' yet. This page follows it as soon as it starts.')));
          break;
        case 'missing':
          panel.append(el('div', { class: 'alert error', role: 'alert' },
            el('h2', null, 'No such session'),
            el('p', null, 'The server has no session ' + id + ', and none appeared while this page waited.'),
            el('p', null, el('a', { href: '#/' }, 'See all sessions'))));
          break;
        case 'waiting':
          panel.append(el('div', { class: 'card' },
            el('h2', null, 'Waiting for the upload'),
            el('p', null, 'This session was created ahead of its recording. Stream into it with:'),
            el('p', null, el('code', null, 'referee-client ' + location.origin + ' --video FILE --signal FILE --session ' + id)),
            el('p', { class: 'hint' }, 'This page shows the frames live as they arrive.')));
          break;
        case 'receiving': {
          liveImg = el('img', { alt: 'Live view: the latest frame stored', src: url(sessionPath(id, 'live.mjpeg')) });
          ui.heading = el('h2');
          ui.bar = bar('big');
          ui.text = el('p', { class: 'progress-text' });
          panel.append(el('div', { class: 'card live-card' },
            el('div', { class: 'live-view' }, liveImg, el('span', { class: 'live-badge' }, 'LIVE')),
            el('div', null, ui.heading, ui.bar, ui.text)));
          break;
        }
        case 'processing': {
          ui.stages = STAGES.map((stage) => {
            const pct = el('span', { class: 'pct' });
            const li = el('li', null, STAGE_LABEL[stage], pct);
            return { stage, li, pct };
          });
          ui.bar = bar('big proc');
          ui.text = el('p', { class: 'progress-text' });
          panel.append(el('div', { class: 'card' },
            el('h2', null, 'Processing'),
            el('ol', { class: 'stages' }, ...ui.stages.map((x) => x.li)),
            ui.bar, ui.text));
          break;
        }
        case 'complete':
          ui.summary = el('p', { class: 'summary-line' });
          panel.append(ui.summary);
          loadReport();
          break;
        case 'failed':
        case 'detached':
        case 'abandoned': {
          const [kind, heading] = {
            failed: ['error', 'Failed'],
            detached: ['warn', 'Upload interrupted'],
            abandoned: ['muted', 'Abandoned'],
          }[next];
          ui.error = el('p', { class: 'error-text' });
          ui.text = el('p');
          panel.append(el('div', { class: 'alert ' + kind, role: 'alert' }, el('h2', null, heading), ui.error, ui.text));
          if (frames > 0) {
            const last = frames - 1;
            panel.append(el('div', { class: 'card last-frame' },
              el('h2', null, 'Last frame stored'),
              el('img', { src: url(sessionPath(id, 'frames/' + last + '.jpg')), alt: 'Frame ' + last + ', the last one stored' }),
              el('p', { class: 'hint' }, 'frame ' + last)));
          }
          break;
        }
        case 'loading':
          break;
        default:
          panel.append(el('div', { class: 'card' }, el('p', null, 'Status: ' + statusLabel(s.status) + ', ' + frames + ' frames stored.')));
      }
      if (next !== 'complete') results.replaceChildren();
    }

    function update() {
      if (stopped) return;
      const next = phaseOf();
      if (next !== phase) {
        phase = next;
        build(next);
      }
      showPlayer();
      title.textContent = text(s.name) || id;
      document.title = (text(s.name) || id) + ' – referee';
      badge.className = s.status ? statusClass(s.status) : 'status';
      badge.textContent = s.status ? statusLabel(s.status) : (exists === false ? 'not found' : '…');
      const parts = [];
      if (s.name) parts.push(id);
      if (text(s.source)) parts.push(s.source);
      if (num(s.width) && num(s.height)) parts.push(s.width + '×' + s.height + ' at ' + trimFloat(s.fps) + ' fps');
      if (s.created_at) parts.push('created ' + when(s.created_at));
      meta.textContent = parts.join(' · ');

      const stored = num(s.frames_stored) || 0;
      const expected = num(s.frames_expected);
      const error = text(s.error);
      switch (phase) {
        case 'receiving': {
          const p = progressOf(s);
          ui.heading.textContent = s.status === 'awaiting_signal'
            ? 'All frames stored: waiting for the signal file'
            : 'Receiving';
          setBar(ui.bar, p.fraction, '', 'big');
          const now = performance.now();
          if (!rateFrom || stored < rateFrom.frames) rateFrom = { frames: stored, at: now };
          const elapsed = (now - rateFrom.at) / 1000;
          const rate = elapsed >= 1 && s.status === 'receiving' ? (stored - rateFrom.frames) / elapsed : null;
          ui.text.textContent = (expected ? stored + ' of ' + expected + ' frames stored' : stored + ' frames stored')
            + (expected ? ' (' + Math.floor(100 * Math.min(1, stored / expected)) + '%)' : '')
            + ' · ' + mb(s.bytes_stored)
            + (rate === null ? '' : ' · ' + rate.toFixed(1) + ' frames/s');
          break;
        }
        case 'processing': {
          const current = Math.max(0, STAGES.indexOf(s.stage));
          const percent = Math.max(0, Math.min(100, num(s.percent) || 0));
          ui.stages.forEach((x, i) => {
            x.li.className = i < current ? 'done' : i === current ? 'current' : '';
            x.pct.textContent = i < current ? 'done' : i === current ? Math.floor(percent) + '%' : '';
          });
          const p = progressOf(s);
          setBar(ui.bar, p.fraction, 'proc', 'big');
          ui.text.textContent = (STAGE_LABEL[s.stage] || 'Processing') + ': ' + Math.floor(percent) + '% · '
            + stored + ' frames stored';
          break;
        }
        case 'complete':
          if (ui.summary && !ui.summary.firstChild) {
            ui.summary.append(el('strong', null, 'Complete'), ' · ' + stored + ' frames · ' + mb(s.bytes_stored));
          }
          break;
        case 'failed':
          ui.error.textContent = error || 'No reason was given.';
          ui.text.textContent = stored + ' frames were stored. ' + (s.completed_at ? '' : 'No results were published.');
          break;
        case 'detached':
          ui.error.textContent = error || 'The connection ended before the upload finished.';
          ui.text.textContent = stored + (expected ? ' of ' + expected : '') + ' frames are stored. '
            + (s.resumable_until
              ? 'The client can resume until ' + when(s.resumable_until) + ': run the same command again with --resume ' + id + '.'
              : 'The client can resume: run the same command again with --resume ' + id + '.');
          break;
        case 'abandoned':
          ui.error.textContent = error || 'The upload was not resumed in time.';
          ui.text.textContent = 'No longer resumable. The ' + stored + ' stored frames are kept'
            + (s.expires_at ? ' until ' + when(s.expires_at) : '') + ', then deleted.';
          break;
        default:
          break;
      }
    }

    async function loadMeta() {
      try {
        const stored = await getJson(sessionPath(id));
        exists = true;
        applyStored(s, stored);
      } catch (err) {
        if (err.status === 404) {
          if (exists === null) exists = undefined;
        } else if (!stopped) {
          results.replaceChildren(errorBox('Cannot read this session', err));
        }
      }
      update();
    }

    function onEvent(name, data) {
      if (name === 'not_found') {
        if (exists) {
          // It exists but has not started within the server's wait: wait again.
          restart();
        } else {
          exists = false;
          closeStream();
          update();
        }
        return;
      }
      if (name === 'lagged') {
        loadMeta();
        return;
      }
      if (!data || typeof data !== 'object' || data.session_id !== id) return;
      exists = true;
      if (name === 'deleted') {
        closeStream();
        exists = false;
        s.status = null;
        update();
        return;
      }
      const before = s.status;
      applyEvent(s, data);
      update();
      // Events carry the state; the name, source, times and links come from the API.
      if (before !== s.status || name === 'started' || name === 'resumed') loadMeta();
      if (FINAL.has(s.status)) closeStream();
    }

    function closeStream() {
      if (stream) stream.close();
      stream = null;
    }

    function restart() {
      closeStream();
      if (!stopped) stream = follow(sessionPath(id, 'events'), { timeout: 3600 }, onEvent, null);
    }

    // ---- the report of a complete session

    let reportLoading = false;
    async function loadReport() {
      if (reportLoading) return;
      reportLoading = true;
      let report;
      try {
        report = await getJson(sessionPath(id, 'report.json'));
      } catch (err) {
        reportLoading = false;
        if (!stopped) results.replaceChildren(errorBox('Cannot load the report', err));
        return;
      }
      if (stopped) return;
      renderReport(report);
    }

    function renderReport(report) {
      const events = Array.isArray(report.events) ? report.events.filter((e) => e && typeof e === 'object') : [];
      const bout = boutOf(report);
      const duration = num(report.duration_s) || 0;
      if (ui.summary) {
        ui.summary.replaceChildren(el('strong', null, 'Complete'),
          ' · ' + (num(report.frames) || 0) + ' frames (' + secs(duration, 2) + ') · '
          + events.length + (events.length === 1 ? ' event' : ' events') + ' · '
          + (Array.isArray(report.segments) ? report.segments.length : 0) + ' activity segments · '
          + text(report.video_codec));
      }
      const video = el('video', {
        id: 'video', controls: true, preload: 'metadata', playsinline: true, src: url(sessionPath(id, 'video')),
      });
      const plot = timeline(report, events, bout, (time, index) => seek(time, index));
      plotRef = plot;
      pendingEvents = window.RefereePlayer ? window.RefereePlayer.eventsOf(report) : null;
      if (player && pendingEvents) player.setEvents(pendingEvents);
      const times = Array.isArray(report.frame_times_s) ? report.frame_times_s.map((v) => num(v) || 0) : null;
      const fps = num(report.fps) || 0;
      /** The frame on screen at `seconds`. */
      const frameAt = (seconds) => {
        if (times && times.length && window.RefereePlayer) return window.RefereePlayer.indexAt(times, times.length, seconds + 1e-9);
        if (fps <= 0) return 0;
        // At a constant rate frame i is at i / fps in whole microseconds, as the client sends.
        const at = (i) => Math.round(i * 1e6 / fps) / 1e6;
        let i = Math.max(0, Math.floor(seconds * fps));
        while (i > 0 && at(i) > seconds + 1e-9) i--;
        while (at(i + 1) <= seconds + 1e-9) i++;
        return i;
      };
      const rowsByIndex = [];

      function seek(time, index) {
        let t = Math.max(0, num(time) || 0);
        const end = num(video.duration);
        if (end) t = Math.min(t, end);
        video.currentTime = t;
        plot.setTime(t);
        if (player) player.seek(frameAt(t));
        rowsByIndex.forEach((tr, i) => tr.classList.toggle('active', i === index));
        plot.setActive(index);
        const box = video.getBoundingClientRect();
        if (box.top < 0 || box.bottom > window.innerHeight) video.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      }
      // Its box has the video's shape before the video loads.
      if (num(report.width) && num(report.height)) video.style.aspectRatio = report.width + ' / ' + report.height;
      video.addEventListener('timeupdate', () => plot.setTime(video.currentTime));
      video.addEventListener('seeked', () => plot.setTime(video.currentTime));

      const tbody = el('tbody');
      if (events.length === 0) {
        tbody.append(el('tr', null, el('td', { colspan: 6, class: 'none' }, 'No signal events.')));
      }
      events.forEach((event, i) => {
        const target = seekTime(event);
        const fields = event.fields && typeof event.fields === 'object' ? Object.entries(event.fields) : [];
        const action = actionOf(event);
        const entry = bout.entries.get(i);
        const notes = [
          ...bout.flags.filter((f) => f.event === i).map((f) => el('span', { class: 'flagged' }, '⚑ ' + text(f.reason))),
          ...bout.marks.filter((m) => m.event === i).map((m) => el('span', { class: 'marked' }, '◎ ' + text(m.reason))),
        ];
        const tr = el('tr', { class: 'event', tabindex: 0, 'data-index': i, 'data-time': target, 'data-kind': kindClass(event, entry) },
          el('td', null, el('span', { class: 'badge ' + kindClass(event, entry) }, i + 1)),
          el('td', null,
            el('strong', null, text(event.name)),
            entry && ['touch', 'double', 'card'].includes(entry.kind) ? el('span', { class: 'score-after' }, scoreText(entry.score)) : null,
            fields.length ? el('br') : null,
            ...fields.map(([k, v]) => el('span', { class: 'field' }, k + '=' + text(v))),
            el('span', { class: 'line-no' }, 'line ' + (num(event.line) || '?')),
            ...notes.flatMap((n) => [el('br'), n])),
          el('td', { class: 'num', 'data-label': 'Time' }, secs(event.time_s), el('br'),
            'frame ' + (num(event.frame_index) === null ? '?' : event.frame_index), el('br'),
            el('a', { class: 'frame-link', href: frameLink(id, frameAt(target)), title: 'open the replay here (a link to share)' }, '▶ replay')),
          el('td', { 'data-label': 'Action' }, action
            ? el('span', null, el('span', { class: 'lead-text' }, 'began ' + secs(action.lead_s, 2) + ' before'),
              el('br'), 'frame ' + action.start_frame + ' · ' + secs(action.start_time_s))
            : el('span', { class: 'none' }, hasAction(event) ? 'no activity just before' : '–')),
          el('td', { class: 'thumb' }, figure(event.thumbnail, 'event frame', event.frame_index, event.frame_time_s)),
          el('td', { class: 'thumb' }, action ? figure(action.thumbnail, 'action start', action.start_frame, action.start_time_s) : null));
        tr.addEventListener('click', (e) => {
          // The replay link opens the player here without reloading the page.
          if (e.target.closest('a.frame-link')) e.preventDefault();
          seek(target, i);
        });
        tr.addEventListener('keydown', (e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            seek(target, i);
          }
        });
        rowsByIndex.push(tr);
        tbody.append(tr);
      });

      const table = el('table', { class: 'events' },
        el('thead', null, el('tr', null,
          ...['#', 'Event', 'Time', 'Action', 'Event frame', 'Action start'].map((h) => el('th', null, h)))),
        tbody);
      const videoCard = el('div', { class: 'card video-card' }, video);
      if (text(report.video) && !text(report.video).endsWith('.mp4')) {
        videoCard.append(el('p', { class: 'hint' }, 'The video is ' + text(report.video_codec)
          + ', which browsers may not play: download it below.'));
      }
      results.replaceChildren(
        videoCard,
        el('h2', null, 'Motion timeline'),
        el('div', { class: 'card' },
          el('div', { class: 'plot-wrap' }, plot.node),
          el('div', { class: 'legend' },
            el('span', null, el('i', { class: 'l-motion' }), 'motion energy'),
            el('span', null, el('i', { class: 'l-seg' }), 'activity segment'),
            el('span', null, el('i', { class: 'l-event' }), 'signal event'),
            el('span', null, el('i', { class: 'l-action' }), 'action start'),
            el('span', null, '- - threshold'),
            el('span', null, 'click to seek')),
          report.motion && text(report.motion.note) ? el('p', { class: 'hint motion-note' }, text(report.motion.note)) : null),
        el('h2', null, 'Signal events (' + events.length + ')'),
        el('div', { class: 'card table-wrap' }, table),
        el('p', { class: 'downloads' }, 'Files: ',
          el('a', { href: url(sessionPath(id, 'video')), download: text(report.video) || true }, 'video'),
          el('a', { href: url(sessionPath(id, 'report.json')) }, 'report.json'),
          el('a', { href: url(sessionPath(id, 'report.html')) }, 'report.html')));
    }

    /** A thumbnail of the report (`thumbnails/NAME`), served by the API. */
    function figure(path, label, frame, time) {
      const name = text(path).split('/').pop();
      if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) return null;
      return el('figure', null,
        el('img', {
          src: url(sessionPath(id, 'thumbnails/' + encodeURIComponent(name))),
          alt: label + ', frame ' + frame, width: 240,
        }),
        el('figcaption', null, label + ' · frame ' + frame + ' · ' + secs(time)));
    }

    stream = follow(sessionPath(id, 'events'), { timeout: 3600 }, onEvent, null);
    loadMeta();
    return () => {
      stopped = true;
      closeStream();
      stopLive();
      if (player) player.destroy();
      const video = results.querySelector('video');
      if (video) {
        video.pause();
        video.removeAttribute('src');
        video.load();
      }
    };
  }

  // ---------------------------------------------------------------- the motion timeline

  /** Seconds before where an action began that a click on an event opens the video at. */
  const PRE_ROLL_S = 1;

  /** Whether an event ends an action (a halt or a period does not). */
  function hasAction(event) {
    return event.kind !== 'halt' && event.kind !== 'period';
  }

  /** The action that led to `event`, if it has one that means something. */
  function actionOf(event) {
    const action = event.action && typeof event.action === 'object' ? event.action : null;
    return action && hasAction(event) && num(action.start_frame) !== null ? action : null;
  }

  /**
   * Where a click on `event` opens the video: where its action began minus the pre-roll (or
   * the pre-roll before the event); a halt or a period at its own time. As in report.html.
   */
  function seekTime(event) {
    const at = num(event.frame_time_s) !== null ? event.frame_time_s : num(event.time_s) || 0;
    const action = actionOf(event);
    if (!hasAction(event)) return at;
    if (action && num(action.start_time_s) !== null) return Math.max(0, action.start_time_s - PRE_ROLL_S);
    return Math.max(0, at - PRE_ROLL_S);
  }

  /** The report's score timeline, checked: entries by event index, flags and marks. */
  function boutOf(report) {
    const bout = report.bout && typeof report.bout === 'object' ? report.bout : {};
    const list = (v) => (Array.isArray(v) ? v.filter((e) => e && typeof e === 'object' && num(e.event) !== null) : []);
    const timeline = list(bout.timeline);
    return {
      timeline,
      entries: new Map(timeline.map((e) => [e.event, e])),
      flags: list(bout.flags),
      marks: list(bout.marks),
      final: bout.final_score,
    };
  }

  function scoreText(score) {
    return score && typeof score === 'object' ? (num(score.left) || 0) + '-' + (num(score.right) || 0) : '';
  }

  /** CSS classes of an event's kind, side and card colour: `k-touch s-left`, `k-card c-yellow`. */
  function kindClass(event, entry) {
    const safe = (v) => (/^[a-z_]+$/.test(text(v)) ? text(v) : '');
    const kind = safe(event.kind) || 'other';
    const side = safe(event.side);
    const color = entry ? safe(entry.color) : '';
    return 'k-' + kind + (side ? ' s-' + side : '') + (color ? ' c-' + color : '');
  }

  /** A "nice" tick step in seconds for `duration`: about 5 to 10 ticks. */
  function tickStep(duration) {
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
    return steps.find((step) => duration / step <= 10) || 3600;
  }

  /**
   * The motion timeline as an SVG (the same drawing as report.html): the motion energy, the
   * activity segments, the threshold, and the signal events as numbered markers. Clicking a
   * marker, or anywhere on the plot, calls `onSeek(seconds, eventIndex)`. Under it, the score
   * track: the score after each touch, cards in their colour, halts, flags and marks.
   */
  function timeline(report, events, bout, onSeek) {
    const W = 1000, H = 260, L = 46, R = 24, T = 30, B = 30;
    const pw = W - L - R, ph = H - T - B;
    const motion = report.motion && typeof report.motion === 'object' ? report.motion : {};
    const energy = Array.isArray(motion.energy) ? motion.energy.map((v) => Math.max(0, num(v) || 0)) : [];
    const fps = num(report.fps) || 0;
    const frames = Math.max(energy.length, num(report.frames) || 0);
    const duration = num(report.duration_s) || (fps ? frames / fps : 0);
    const x = (frame) => (frames > 1 ? L + Math.max(0, Math.min(frames - 1, frame)) / (frames - 1) * pw : L + pw / 2);
    const threshold = num(motion.threshold) || 0;
    const peak = energy.reduce((a, b) => Math.max(a, b), 0);
    const yMax = Math.max(peak, threshold * 1.25, 1) * 1.05;
    const y = (e) => T + ph - Math.max(0, Math.min(1, e / yMax)) * ph;
    // A variable frame rate comes with each frame's time: times are placed by them.
    const times = Array.isArray(report.frame_times_s) ? report.frame_times_s.map((v) => num(v) || 0) : null;
    const frameOf = (seconds) => {
      if (!times || !times.length) return seconds * fps;
      let lo = 0, hi = times.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (times[mid] <= seconds) lo = mid + 1; else hi = mid;
      }
      return Math.max(0, lo - 1);
    };
    const timeOf = (frame) => (times && times.length
      ? times[Math.max(0, Math.min(times.length - 1, Math.round(frame)))]
      : frame / fps);

    const TRACK = bout.timeline.length ? 56 : 0;
    const root = svg('svg', {
      class: 'timeline', viewBox: '0 0 ' + W + ' ' + (H + TRACK), role: 'img',
      'aria-label': 'Motion energy over time with ' + events.length + ' signal events',
    });
    const background = svg('rect', { class: 'plot-bg', x: L, y: T, width: pw, height: ph });
    root.append(background);

    if (fps > 0 && duration > 0) {
      const step = tickStep(duration);
      for (let i = 0; i * step <= duration + 1e-9; i++) {
        const t = i * step;
        const tx = x(frameOf(t)).toFixed(1);
        root.append(
          svg('line', { class: 'tick', x1: tx, y1: T, x2: tx, y2: T + ph }),
          svg('text', { x: tx, y: H - 10, 'text-anchor': 'middle' }, trimFloat(t) + 's'));
      }
    }

    for (const seg of Array.isArray(report.segments) ? report.segments : []) {
      if (!seg || num(seg.start_frame) === null || num(seg.end_frame) === null) continue;
      const x1 = x(seg.start_frame), x2 = x(seg.end_frame);
      root.append(svg('rect', {
        class: 'segment', x: x1.toFixed(1), y: T, width: Math.max(1.5, x2 - x1).toFixed(1), height: ph,
      }, svg('title', null, 'activity ' + secs(seg.start_s) + ' – ' + secs(seg.end_s))));
    }

    // The series, at most 1000 points (each bucket's maximum).
    if (energy.length) {
      const bucket = Math.max(1, Math.ceil(energy.length / 1000));
      const points = [];
      for (let start = 0; start < energy.length; start += bucket) {
        const chunk = energy.slice(start, start + bucket);
        const top = chunk.reduce((a, b) => Math.max(a, b), 0);
        points.push([x(start + Math.floor(chunk.length / 2)), y(top)]);
      }
      const line = points.map(([px, py]) => px.toFixed(1) + ',' + py.toFixed(1)).join(' ');
      const base = (T + ph).toFixed(1);
      root.append(
        svg('polygon', { class: 'area', points: points[0][0].toFixed(1) + ',' + base + ' ' + line + ' ' + points[points.length - 1][0].toFixed(1) + ',' + base }),
        svg('polyline', { class: 'motion', points: line }));
    }

    const ty = y(threshold).toFixed(1);
    root.append(
      svg('line', { class: 'threshold', x1: L, y1: ty, x2: L + pw, y2: ty }, svg('title', null, 'threshold ' + threshold.toFixed(2))),
      svg('line', { class: 'axis', x1: L, y1: T + ph, x2: L + pw, y2: T + ph }),
      svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: T + ph }),
      svg('text', { x: L - 6, y: T + 4, 'text-anchor': 'end' }, yMax.toFixed(1)),
      svg('text', { x: L - 6, y: T + ph, 'text-anchor': 'end' }, '0'));

    const playhead = svg('line', { class: 'playhead', x1: L, y1: T, x2: L, y2: T + ph, visibility: 'hidden' });
    root.append(playhead);

    const markers = [];
    events.forEach((event, i) => {
      const frame = num(event.frame_index) || 0;
      const ex = x(frame).toFixed(1);
      const action = actionOf(event);
      const cls = kindClass(event, bout.entries.get(i));
      if (action) {
        const ax = x(action.start_frame).toFixed(1);
        root.append(
          svg('g', { class: 'action' }, svg('line', { x1: ax, y1: T, x2: ax, y2: T + ph }),
            svg('title', null, 'action before event ' + (i + 1) + ': began ' + secs(action.lead_s, 2) + ' before')),
          svg('line', { class: 'lead', x1: ax, y1: T - 12, x2: ex, y2: T - 12 }));
      }
      const time = seekTime(event);
      const marker = svg('g', { class: 'event', 'data-index': i, tabindex: 0 },
        svg('line', { class: cls, x1: ex, y1: T - 2, x2: ex, y2: T + ph }),
        svg('circle', { class: cls, cx: ex, cy: T - 12, r: 10 }),
        svg('text', { x: ex, y: T - 8 }, String(i + 1)),
        svg('title', null, (i + 1) + '. ' + text(event.name) + ' at ' + secs(event.time_s) + ' (frame ' + frame + ')'));
      marker.addEventListener('click', (e) => {
        e.stopPropagation();
        onSeek(time, i);
      });
      markers.push(marker);
      root.append(marker);
    });

    // The score track, on the same time axis.
    if (TRACK) {
      const base = H + 44;
      root.append(
        svg('text', { x: L - 6, y: H + 32, 'text-anchor': 'end' }, 'score'),
        svg('line', { class: 'axis', x1: L, y1: base, x2: L + pw, y2: base }));
      for (const entry of bout.timeline) {
        const event = events[entry.event];
        if (!event) continue;
        const ex = x(num(entry.frame_index) || 0);
        const cls = kindClass(event, entry);
        let shape;
        if (entry.kind === 'touch' || entry.kind === 'double') {
          shape = [svg('circle', { class: cls, cx: ex.toFixed(1), cy: base, r: 5 }),
            svg('text', { class: 'score-text', x: ex.toFixed(1), y: H + 32 }, scoreText(entry.score))];
        } else if (entry.kind === 'card') {
          shape = [svg('rect', { class: cls, x: (ex - 4.5).toFixed(1), y: base - 8, width: 9, height: 14, rx: 1 })];
        } else if (entry.kind === 'halt') {
          shape = [svg('rect', { class: cls, x: (ex - 2).toFixed(1), y: base - 6, width: 4, height: 12 })];
        } else if (entry.kind === 'off_target') {
          shape = [svg('circle', { class: cls, cx: ex.toFixed(1), cy: base, r: 4 })];
        } else {
          continue;
        }
        let title = (entry.event + 1) + '. ' + text(event.name) + ' at ' + secs(entry.time_s) + ': ' + scoreText(entry.score);
        const flag = bout.flags.find((f) => f.event === entry.event);
        const mark = bout.marks.find((m) => m.event === entry.event);
        if (flag) {
          title += ' – FLAG: ' + text(flag.reason);
          shape.push(svg('text', { class: 'flag', x: ex.toFixed(1), y: H + 14, 'text-anchor': 'middle' }, '!'));
        }
        if (mark) {
          title += ' – REVIEW: ' + text(mark.reason);
          shape.push(svg('circle', { class: 'mark', cx: ex.toFixed(1), cy: base, r: 9 }));
        }
        const item = svg('g', { class: 'bout-item', 'data-index': entry.event, tabindex: 0 }, ...shape, svg('title', null, title));
        const time = seekTime(event);
        item.addEventListener('click', (e) => {
          e.stopPropagation();
          onSeek(time, entry.event);
        });
        root.append(item);
      }
    }

    background.addEventListener('click', (e) => {
      const matrix = root.getScreenCTM();
      if (!matrix || fps <= 0 || frames < 2) return;
      const point = new DOMPoint(e.clientX, e.clientY).matrixTransform(matrix.inverse());
      const frame = (point.x - L) / pw * (frames - 1);
      onSeek(timeOf(Math.max(0, frame)), -1);
    });

    return {
      node: root,
      setTime(seconds) {
        if (fps <= 0 || num(seconds) === null) return;
        const px = x(frameOf(seconds)).toFixed(1);
        playhead.setAttribute('x1', px);
        playhead.setAttribute('x2', px);
        playhead.setAttribute('visibility', 'visible');
      },
      setActive(index) {
        markers.forEach((m, i) => m.classList.toggle('active', i === index));
      },
    };
  }

  // ---------------------------------------------------------------- start

  function start() {
    takeTokenFromUrl();
    setupTokenForm();
    window.addEventListener('hashchange', route);
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}());
