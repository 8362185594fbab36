// The motion timeline of a session's report: the motion energy, the activity segments, the
// threshold, the signal events and under them the score track, drawn as report.html draws it,
// with the same layout (`/timeline-layout.js`, written by the server from the numbers
// report.html is drawn with: `server/src/pipeline/timeline_layout.rs`).

import { num, secs, svg, text, trimFloat } from './dom.js';
import { LAYOUT } from './timeline-layout.js';

/** Seconds before where an action began that a click on an event opens the video at. */
const PRE_ROLL_S = LAYOUT.pre_roll_s;

/** Whether an event ends an action (a halt or a period does not). */
export function hasAction(event) {
  return event.kind !== 'halt' && event.kind !== 'period';
}

/** The action that led to `event`, if it has one that means something. */
export function actionOf(event) {
  const action = event.action && typeof event.action === 'object' ? event.action : null;
  return action && hasAction(event) && num(action.start_frame) !== null ? action : null;
}

/**
 * Where a click on `event` opens the video: where its action began minus the pre-roll (or
 * the pre-roll before the event); a halt or a period at its own time. As in report.html.
 */
export function seekTime(event) {
  const at = num(event.frame_time_s) !== null ? event.frame_time_s : num(event.time_s) || 0;
  const action = actionOf(event);
  if (!hasAction(event)) return at;
  if (action && num(action.start_time_s) !== null) return Math.max(0, action.start_time_s - PRE_ROLL_S);
  return Math.max(0, at - PRE_ROLL_S);
}

/** The report's score timeline, checked: entries by event index, flags and marks. */
export function boutOf(report) {
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

export function scoreText(score) {
  return score && typeof score === 'object' ? (num(score.left) || 0) + '-' + (num(score.right) || 0) : '';
}

/** CSS classes of an event's kind, side and card colour: `k-touch s-left`, `k-card c-yellow`. */
export function kindClass(event, entry) {
  const safe = (v) => (/^[a-z_]+$/.test(text(v)) ? text(v) : '');
  const kind = safe(event.kind) || 'other';
  const side = safe(event.side);
  const color = entry ? safe(entry.color) : '';
  return 'k-' + kind + (side ? ' s-' + side : '') + (color ? ' c-' + color : '');
}

/** A "nice" tick step in seconds for `duration`: about 5 to 10 ticks (whole hours past 10 hours). */
function tickStep(duration) {
  return LAYOUT.tick_steps.find((step) => duration / step <= 10) || Math.ceil(duration / 10 / 3600) * 3600;
}

/**
 * The motion timeline as an SVG (the same drawing as report.html): the motion energy, the
 * activity segments, the threshold, and the signal events as numbered markers. Clicking a
 * marker, or anywhere on the plot, calls `onSeek(seconds, eventIndex)`. Under it, the score
 * track: the score after each touch, cards in their colour, halts, flags and marks.
 */
export function timeline(report, events, bout, onSeek) {
  const { width: W, height: H, left: L, right: R, top: T, bottom: B } = LAYOUT;
  const pw = W - L - R, ph = H - T - B;
  const motion = report.motion && typeof report.motion === 'object' ? report.motion : {};
  const energy = Array.isArray(motion.energy) ? motion.energy.map((v) => Math.max(0, num(v) || 0)) : [];
  const fps = num(report.fps) || 0;
  const frames = Math.max(energy.length, num(report.frames) || 0);
  const duration = num(report.duration_s) || (fps ? frames / fps : 0);
  const x = (frame) => (frames > 1 ? L + Math.max(0, Math.min(frames - 1, frame)) / (frames - 1) * pw : L + pw / 2);
  const threshold = num(motion.threshold) || 0;
  const peak = energy.reduce((a, b) => Math.max(a, b), 0);
  const yMax = Math.max(peak, threshold * LAYOUT.threshold_headroom, 1) * LAYOUT.peak_headroom;
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

  const TRACK = bout.timeline.length ? LAYOUT.score_track_height : 0;
  const root = svg('svg', {
    class: 'timeline', viewBox: '0 0 ' + W + ' ' + (H + TRACK), role: 'img',
    'aria-label': 'Motion energy over time with ' + events.length + ' signal events',
  });
  const background = svg('rect', { class: 'plot-bg', x: L, y: T, width: pw, height: ph });
  root.append(background);

  if (fps > 0 && duration > 0) {
    const step = tickStep(duration);
    for (let i = 0; i < LAYOUT.max_ticks && i * step <= duration + 1e-9; i++) {
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

  // The series, at most LAYOUT.max_points points (each bucket's maximum).
  if (energy.length) {
    const bucket = Math.max(1, Math.ceil(energy.length / LAYOUT.max_points));
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
