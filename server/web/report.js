// The results of a complete session on its page: the video, the motion timeline, the signal
// events with their thumbnails, and the files to download.

import { sessionPath, url } from './api.js';
import { el, num, secs, text } from './dom.js';
import { frameLink } from './links.js';
import { RefereePlayer } from './player.js';
import { actionOf, boutOf, hasAction, kindClass, scoreText, seekTime, timeline } from './timeline.js';

/**
 * The results of complete session `id` from its `report`: the video, the motion timeline
 * (clicking an event, a row or the plot seeks the video, and the replay player through
 * `seekPlayer(frame)`), the events table and the files. Returns the summary line's nodes,
 * the page's nodes, the plot (`setTime`, `setActive`) and the events for the player.
 */
export function reportView(id, report, seekPlayer) {
  const events = Array.isArray(report.events) ? report.events.filter((e) => e && typeof e === 'object') : [];
  const bout = boutOf(report);
  const duration = num(report.duration_s) || 0;
  const summary = [el('strong', null, 'Complete'),
    ' · ' + (num(report.frames) || 0) + ' frames (' + secs(duration, 2) + ') · '
    + events.length + (events.length === 1 ? ' event' : ' events') + ' · '
    + (Array.isArray(report.segments) ? report.segments.length : 0) + ' activity segments · '
    + text(report.video_codec)];
  const video = el('video', {
    id: 'video', controls: true, preload: 'metadata', playsinline: true, src: url(sessionPath(id, 'video')),
  });
  const plot = timeline(report, events, bout, (time, index) => seek(time, index));
  const times = Array.isArray(report.frame_times_s) ? report.frame_times_s.map((v) => num(v) || 0) : null;
  const fps = num(report.fps) || 0;
  /** The frame on screen at `seconds`. */
  const frameAt = (seconds) => {
    if (times && times.length) return RefereePlayer.indexAt(times, times.length, seconds + 1e-9);
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
    seekPlayer(frameAt(t));
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
      el('td', { class: 'thumb' }, figure(id, event.thumbnail, 'event frame', event.frame_index, event.frame_time_s)),
      el('td', { class: 'thumb' }, action ? figure(id, action.thumbnail, 'action start', action.start_frame, action.start_time_s) : null));
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
  const nodes = [
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
      el('a', { href: url(sessionPath(id, 'report.html')) }, 'report.html')),
  ];
  return { summary, nodes, plot, playerEvents: RefereePlayer.eventsOf(report) };
}

/** A thumbnail of session `id`'s report (`thumbnails/NAME`), served by the API. */
function figure(id, path, label, frame, time) {
  const name = text(path).split('/').pop();
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) return null;
  return el('figure', null,
    el('img', {
      src: url(sessionPath(id, 'thumbnails/' + encodeURIComponent(name))),
      alt: label + ', frame ' + frame, width: 240,
    }),
    el('figcaption', null, label + ' · frame ' + frame + ' · ' + secs(time)));
}
