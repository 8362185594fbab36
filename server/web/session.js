// A session's page (#/sessions/ID): what the session is doing, live, and its results.

import { applyEvent, applyStored, errorBox, follow, getJson, sessionPath, url } from './api.js';
import { el, num, statusClass, statusLabel, text, trimFloat, when } from './dom.js';
import { buildPanel, updatePanel } from './panel.js';
import { RefereePlayer } from './player.js';
import { frameLink, sessionLink } from './links.js';
import { reportView } from './report.js';

/** Statuses after which a session's event stream ends. */
const FINAL = new Set(['complete', 'failed']);

/**
 * Session `id`'s page in `root`, kept up to date from its event stream: waiting, the live view
 * while it is received, processing, the results once complete, or what went wrong; the
 * replay player (at `startFrame`, or the first frame) as soon as frames are stored. Returns
 * the function that stops it.
 */
export function sessionPage(root, id, startFrame) {
  document.title = id + ' – referee';
  const s = { id };
  let phase = null;
  let exists = null; // unknown until the API or an event says
  let stream = null;
  let stopped = false;
  let liveImg = null;
  let ui = {};
  /** The first frame count seen while receiving, and when: for the rate. */
  const since = { from: null };

  const title = el('h1', null, id);
  const badge = el('span', { class: 'status' }, '…');
  const meta = el('p', { class: 'meta' });
  const panel = el('section', { class: 'panel' });
  const replay = el('section', { class: 'replay', hidden: true });
  const results = el('section', { class: 'results' });
  const cameras = el('div', { class: 'cameras', hidden: true });
  root.append(
    el('nav', { class: 'crumbs' }, el('a', { href: '#/' }, '← All sessions')),
    el('div', { class: 'page-head' }, title, badge),
    meta, panel, replay, results);

  // ---- the bout's other cameras, small, each on the frame at the main one's bout time
  /** { id, camera, offset, player } of each other camera. */
  let others = null;
  const offsetOf = (view) => num(view && view.bout && view.bout.offset_s) || 0;
  /** The main player shows `seconds` of its clock: every other camera to the same bout time. */
  function followCameras(seconds) {
    if (!others || seconds === null) return;
    const bout = seconds + offsetOf(s);
    for (const o of others) o.player.seekTime(bout - o.offset);
  }
  async function showCameras() {
    if (others || !s.bout || !player) return;
    others = [];
    let list;
    try {
      list = await getJson('api/sessions');
    } catch (err) {
      cameras.replaceChildren(errorBox('Cannot list the bout\'s other cameras', err));
      cameras.hidden = false;
      return;
    }
    if (stopped) return;
    const mine = s.bout.bout_id;
    const views = (list.sessions || [])
      .filter((v) => v.id !== id && v.bout && v.bout.bout_id === mine)
      .sort((a, b) => s.bout.cameras.indexOf(a.bout.camera) - s.bout.cameras.indexOf(b.bout.camera));
    for (const v of views) {
      const other = RefereePlayer.create({
        follower: true,
        frames: {
          url: (i) => url(sessionPath(v.id, 'frames/' + i + '.jpg')),
          times: (from, count) => getJson(sessionPath(v.id, 'frames'), { from, count }),
        },
      });
      others.push({ id: v.id, camera: v.bout.camera, offset: offsetOf(v), player: other });
      const link = el('a', { href: sessionLink(v.id), class: 'camera-link' }, text(v.bout.camera));
      cameras.append(el('figure', { class: 'camera', 'data-camera': v.bout.camera },
        el('figcaption', null, 'Camera ', link, ' (V: switch to it)'), other.node));
    }
    cameras.hidden = others.length === 0;
    if (others.length) {
      replay.append(el('h3', null, 'Other cameras of the bout'), cameras);
      const t = player.frame >= 0 ? player.time : null;
      if (t !== null) followCameras(t);
    }
  }
  /** V: the next camera of the bout large, at the frame of the same bout time. */
  function switchCamera(e) {
    if (e.key !== 'v' && e.key !== 'V') return;
    if (!others || !others.length || e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target;
    if (target && target.closest && target.closest('input, select, textarea, [contenteditable]')) return;
    const next = others[0];
    const frame = next.player.frame;
    location.hash = frame > 0 ? frameLink(next.id, frame) : sessionLink(next.id);
  }
  document.addEventListener('keydown', switchCamera);

  // ---- the replay player, from the stored frames, as soon as there are some
  let player = null;
  let plotRef = null;
  let pendingEvents = null;
  function showPlayer() {
    const stored = num(s.frames_stored) || 0;
    if (!player && stored > 0) {
      player = RefereePlayer.create({
        frames: {
          url: (i) => url(sessionPath(id, 'frames/' + i + '.jpg')),
          times: (from, count) => getJson(sessionPath(id, 'frames'), { from, count }),
        },
        start: startFrame === null ? 0 : startFrame,
        onFrame(frame, seconds) {
          // The address names the frame on screen: copy it to share this very frame (the
          // first frame is the session's own address).
          const address = frame > 0 ? frameLink(id, frame) : sessionLink(id);
          if (!stopped && location.hash.startsWith('#/sessions/') && location.hash !== address) {
            history.replaceState(null, '', address);
          }
          if (plotRef && seconds !== null) plotRef.setTime(seconds);
        },
        onShown(frame, seconds) { followCameras(seconds); },
      });
      replay.replaceChildren(el('h2', null, 'Replay'), player.node,
        el('p', { class: 'hint' }, '← → one frame · space play/pause · J K L · [ ] touches · A loop · ? keys'));
      if (pendingEvents) player.setEvents(pendingEvents);
    }
    replay.hidden = !player || phase === 'missing' || phase === 'appearing';
    if (player) player.setLive(s.status === 'receiving' || s.status === 'awaiting_signal');
    showCameras();
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
    panel.replaceChildren();
    const built = buildPanel(next, s, id);
    ui = built.ui;
    liveImg = built.liveImg;
    panel.append(...built.nodes);
    if (next === 'complete') loadReport();
    else results.replaceChildren();
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

    updatePanel(phase, ui, s, since);
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
    const view = reportView(id, report, (frame) => {
      if (player) player.seek(frame);
    });
    if (ui.summary) ui.summary.replaceChildren(...view.summary);
    plotRef = view.plot;
    pendingEvents = view.playerEvents;
    if (player && pendingEvents) player.setEvents(pendingEvents);
    results.replaceChildren(...view.nodes);
  }

  stream = follow(sessionPath(id, 'events'), { timeout: 3600 }, onEvent, null);
  loadMeta();
  return () => {
    stopped = true;
    closeStream();
    stopLive();
    if (player) player.destroy();
    document.removeEventListener('keydown', switchCamera);
    for (const o of others || []) o.player.destroy();
    const video = results.querySelector('video');
    if (video) {
      video.pause();
      video.removeAttribute('src');
      video.load();
    }
  };
}
