// Building the dashboard's DOM, and the formatting of what the API says. Every text goes in
// with textContent or as an attribute value, never parsed as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An element with attributes (`class`, `data-*`, ...) and children (nodes or text). */
export function el(tag, attrs, ...children) {
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

/** An SVG element with attributes and children (nodes or text). */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

// ---------------------------------------------------------------- formatting

const STATUS_LABEL = {
  created: 'waiting for upload', receiving: 'receiving', awaiting_signal: 'awaiting signal',
  processing: 'processing', complete: 'complete', failed: 'failed', detached: 'detached',
  abandoned: 'abandoned',
};
export const STAGES = ['video_reconstruction', 'analysis'];
export const STAGE_LABEL = {
  video_reconstruction: 'Rebuilding the video', analysis: 'Analysing motion and events',
};
const STAGE_SHORT = { video_reconstruction: 'video', analysis: 'analysis' };

export function num(v) { return typeof v === 'number' && Number.isFinite(v) ? v : null; }
export function text(v) { return typeof v === 'string' ? v : ''; }
export function mb(bytes) { return ((num(bytes) || 0) / 1e6).toFixed(1) + ' MB'; }
export function secs(v, digits) { return num(v) === null ? '–' : v.toFixed(digits === undefined ? 3 : digits) + ' s'; }
export function trimFloat(v) { return (num(v) || 0).toFixed(3).replace(/\.?0+$/, ''); }
export function when(iso) {
  const d = new Date(text(iso));
  if (Number.isNaN(d.getTime())) return '–';
  return d.toLocaleString([], {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}
export function statusClass(status) { return 'status st-' + text(status).replace(/[^a-z_]/g, ''); }
export function statusLabel(status) { return STATUS_LABEL[status] || text(status) || 'unknown'; }

export function framesText(s) {
  const stored = num(s.frames_stored) || 0;
  const expected = num(s.frames_expected);
  return expected ? stored + ' / ' + expected : String(stored);
}

/** How far a session is, for a bar: `fraction` (null when unknown), a label and a style. */
export function progressOf(s) {
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

export function bar(extra) {
  return el('div', {
    class: 'bar' + (extra ? ' ' + extra : ''), role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
  }, el('div', { class: 'fill' }));
}

export function setBar(node, fraction, kind, extra) {
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
