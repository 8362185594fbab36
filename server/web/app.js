// The referee dashboard: the sessions list (#/) and a session's page (#/sessions/ID), both
// kept up to date from the server's event streams. Plain JavaScript as ES modules, no
// framework, no build step: `api.js` the API and its event streams, `dom.js` building the page
// and formatting, `list.js` the list, `session.js` a session's page, `panel.js` what its session is doing,
// `report.js` its results,
// `timeline.js` the motion timeline, `player.js` the replay player. Every text that comes from
// the server is put in with textContent or as an attribute value, never parsed as markup.

import { setupTokenForm, takeTokenFromUrl } from './api.js';
import { listPage } from './list.js';
import { sessionPage } from './session.js';

/** Stops the page on screen. */
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

function start() {
  takeTokenFromUrl();
  setupTokenForm(route);
  window.addEventListener('hashchange', route);
  route();
}

// A module runs once the document is parsed.
start();
