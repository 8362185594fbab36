// The panel of a session's page that says what the session is doing: waiting, the live view
// and progress while it is received, the stages while it is processed, the summary line once
// complete, or what went wrong and what can be done.

import { STAGES, STAGE_LABEL, bar, el, mb, num, progressOf, setBar, statusLabel, text, when } from './dom.js';
import { sessionPath, url } from './api.js';

/**
 * The panel of session `s` (id `id`) in phase `next`: its nodes, the parts `updatePanel`
 * fills in (`ui`), and the live view's image while receiving (`liveImg`).
 */
export function buildPanel(next, s, id) {
  const nodes = [];
  const ui = {};
  let liveImg = null;
  const frames = num(s.frames_stored) || 0;
  switch (next) {
    case 'appearing':
      nodes.push(el('div', { class: 'card' },
        el('h2', null, 'Waiting for this session'),
        el('p', null, 'There is no session ' + id + ' yet. This page follows it as soon as it starts.')));
      break;
    case 'missing':
      nodes.push(el('div', { class: 'alert error', role: 'alert' },
        el('h2', null, 'No such session'),
        el('p', null, 'The server has no session ' + id + ', and none appeared while this page waited.'),
        el('p', null, el('a', { href: '#/' }, 'See all sessions'))));
      break;
    case 'waiting':
      nodes.push(el('div', { class: 'card' },
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
      nodes.push(el('div', { class: 'card live-card' },
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
      nodes.push(el('div', { class: 'card' },
        el('h2', null, 'Processing'),
        el('ol', { class: 'stages' }, ...ui.stages.map((x) => x.li)),
        ui.bar, ui.text));
      break;
    }
    case 'complete':
      ui.summary = el('p', { class: 'summary-line' });
      nodes.push(ui.summary);
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
      nodes.push(el('div', { class: 'alert ' + kind, role: 'alert' }, el('h2', null, heading), ui.error, ui.text));
      if (frames > 0) {
        const last = frames - 1;
        nodes.push(el('div', { class: 'card last-frame' },
          el('h2', null, 'Last frame stored'),
          el('img', { src: url(sessionPath(id, 'frames/' + last + '.jpg')), alt: 'Frame ' + last + ', the last one stored' }),
          el('p', { class: 'hint' }, 'frame ' + last)));
      }
      break;
    }
    case 'loading':
      break;
    default:
      nodes.push(el('div', { class: 'card' }, el('p', null, 'Status: ' + statusLabel(s.status) + ', ' + frames + ' frames stored.')));
  }
  return { nodes, ui, liveImg };
}

/**
 * Fills in the panel built by `buildPanel` for phase `phase` from session `s` (`s.id` its id); `since.from`
 * is the first frame count seen while receiving, and when (for the rate).
 */
export function updatePanel(phase, ui, s, since) {
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
      if (!since.from || stored < since.from.frames) since.from = { frames: stored, at: now };
      const elapsed = (now - since.from.at) / 1000;
      const rate = elapsed >= 1 && s.status === 'receiving' ? (stored - since.from.frames) / elapsed : null;
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
          ? 'The client can resume until ' + when(s.resumable_until) + ': run the same command again with --resume ' + s.id + '.'
          : 'The client can resume: run the same command again with --resume ' + s.id + '.');
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
