// The replay player: frame-accurate review of a bout, on the dashboard's session page (from the
// stored JPEG frames, during the upload too) and in the standalone report.html (from its
// video.mp4). Plain JavaScript, no build step; every text is put in with textContent.
// An ES module that imports nothing, so that report.html can inline it whole as its one
// module script (the dashboard imports it from /player.js).
//
// Two sources of pictures, one player:
// - frames: each stored frame fetched (`frames/N.jpg`), decoded and drawn on a canvas; the
//   frame's time from the server's frame index (`GET /api/sessions/{id}/frames`). Exact by
//   construction: the frame drawn is the frame named.
// - video: the page's <video>, with each frame's time from the report. A step seeks to the
//   middle of the frame's display interval (never to its edge, where rounding of the
//   container's time base could land on the neighbour), and the frame on screen is read back
//   from requestVideoFrameCallback's mediaTime, so a step never skips or repeats a frame.
//
// Keys: ←/→ one frame, space play/pause, J/K/L back/pause/forward, [ ] or PageUp/PageDown the
// previous/next touch, A loops the current touch's action, ? the key list.

/** Speeds offered: 10 % to 100 % in 10 % steps, and 200 %. */
const SPEEDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2];
/** Seconds before where an action began that a jump to a touch opens at. */
const PRE_ROLL_S = 1;
/** Seconds after the touch that a loop of its action runs on. */
const POST_ROLL_S = 0.5;
/** Decoded frames kept at most (frames source), and fetches at once. */
const CACHE_FRAMES = 90;
const MAX_IN_FLIGHT = 4;
/** Frames fetched ahead of the play head while playing, and around it while paused. */
const AHEAD = 24;
const AROUND = 4;
/** A frame not received within this many milliseconds is given up (and asked again later). */
const FETCH_TIMEOUT_MS = 15000;
/** Frame times asked for in one request (the server gives at most `--max-frame-times`). */
const TIMES_PER_REQUEST = 5000;
/** Frame times held at most: about 18 hours at 30 fps. */
const MAX_TIMES = 2000000;
/** While frames still arrive, the frame index is asked for again this often (ms). */
const LIVE_POLL_MS = 1000;
const KEYS = [
  ['← / →', 'one frame back / forward'],
  ['Space', 'play / pause'],
  ['J / K / L', 'play backwards / pause / play forwards'],
  ['[ / ] or PageUp / PageDown', 'previous / next touch (from just before its action)'],
  ['A', 'loop the action of the current touch (from its start to just after the touch)'],
  ['V', 'the next camera of the bout, at the same moment (a bout recorded by several)'],
  ['?', 'this key list'],
];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function finite(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** `12.345 s (0:12.345)`. */
function clock(seconds) {
  if (finite(seconds) === null) return '–';
  const sign = seconds < 0 ? '-' : '';
  const s = Math.abs(seconds);
  const m = Math.floor(s / 60);
  const rest = (s - m * 60).toFixed(3).padStart(6, '0');
  return sign + m + ':' + rest;
}

/** The frame on screen at `seconds`: the last one whose time is not after it. */
function indexAt(times, count, seconds) {
  let lo = 0, hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] <= seconds) lo = mid + 1; else hi = mid;
  }
  return Math.max(0, lo - 1);
}

const LIGHT = { touch: 'touch', double: 'double', off_target: 'off-target' };

/**
 * The events of a report, as the player uses them: `{ number, name, kind, side, frame,
 * actionFrame, score }`, `score` being the score after the event ("1-0") where the bout's
 * timeline gives one.
 */
function eventsOf(report) {
  const list = Array.isArray(report && report.events) ? report.events : [];
  const bout = report && report.bout && typeof report.bout === 'object' ? report.bout : {};
  const scores = new Map();
  for (const e of Array.isArray(bout.timeline) ? bout.timeline : []) {
    if (e && finite(e.event) !== null && e.score && typeof e.score === 'object') {
      scores.set(e.event, (finite(e.score.left) || 0) + '-' + (finite(e.score.right) || 0));
    }
  }
  const out = [];
  list.forEach((e, i) => {
    if (!e || typeof e !== 'object' || finite(e.frame_index) === null) return;
    const kind = typeof e.kind === 'string' ? e.kind : 'other';
    const action = e.action && typeof e.action === 'object' && kind !== 'halt' && kind !== 'period'
      ? finite(e.action.start_frame) : null;
    out.push({
      number: i + 1, name: String(e.name || ''), kind, side: typeof e.side === 'string' ? e.side : '',
      frame: e.frame_index, actionFrame: action, score: scores.has(i) ? scores.get(i) : null,
    });
  });
  return out;
}

/**
 * A player in a new element (`player.node`). `options`:
 * - `frames: { url(i), times(from, count) → Promise<{frames_stored, pts_us}> }`, or
 * - `video: { src, times: [seconds…] }`;
 * - `events` (see `eventsOf`), `start` (a frame), `onFrame(frame, seconds)` (paused on a
 *   frame), `onShown(frame, seconds)` (each frame shown, playing too), `onError(text)`;
 * - `follower: true` for another camera's player that follows the main one (`seekTime`): it
 *   takes no keys, and shows no controls.
 */
function create(options) {
  const events = [];
  let touches = [];
  let times = new Float64Array(1024);
  let count = 0;
  let shown = -1;        // the frame on screen
  let lastShown = -1;    // the frame `onShown` was last told
  let wanted = 0;        // the frame asked for
  let playing = 0;       // -1 backwards, 0 paused, 1 forwards
  let speed = 1;
  let loop = null;       // { from, to, touch }
  let live = false;
  let destroyed = false;
  let anchor = null;     // the play clock: { at: performance.now(), frame }
  let ticking = false;

  const picture = options.video
    ? el('video', { class: 'player-video', src: options.video.src, preload: 'auto', playsinline: true, muted: true })
    : el('canvas', { class: 'player-canvas', width: 640, height: 360 });
  const status = el('p', { class: 'player-status', role: 'status', hidden: true });
  const scoreText = el('span', { class: 'player-score' });
  const lightText = el('span', { class: 'player-light' });
  const clockText = el('span', { class: 'player-clock' });
  const overlay = el('div', { class: 'player-overlay' }, scoreText, lightText, clockText);
  const position = el('span', { class: 'player-pos' });
  const button = (cls, label, title) => el('button', { type: 'button', class: 'player-btn ' + cls, title, 'aria-label': title }, label);
  const prevTouch = button('prev-touch', '◀ touch', 'previous touch ([)');
  const back = button('step-back', '◀❙', 'one frame back (←)');
  const play = button('play', '▶', 'play / pause (space)');
  const forward = button('step-forward', '❙▶', 'one frame forward (→)');
  const nextTouch = button('next-touch', 'touch ▶', 'next touch (])');
  const loopButton = button('loop', 'A', 'loop the action of the current touch (A)');
  const helpButton = button('help', '?', 'keys (?)');
  const speedSelect = el('select', { class: 'player-speed', 'aria-label': 'speed' },
    ...SPEEDS.map((s) => el('option', { value: s, selected: s === 1 }, Math.round(s * 100) + ' %')));
  const scrub = el('input', { class: 'player-scrub', type: 'range', min: 0, max: 0, step: 1, value: 0, 'aria-label': 'frame' });
  const help = el('div', { class: 'player-help', hidden: true },
    el('h3', null, 'Keys'),
    el('dl', null, ...KEYS.flatMap(([k, what]) => [el('dt', null, k), el('dd', null, what)])));
  const node = el('div', { class: options.follower ? 'player player-follower' : 'player', tabindex: 0, 'data-frame': '', 'data-speed': 1, 'data-playing': 'no', 'data-loop': '' },
    el('div', { class: 'player-stage' }, picture, overlay, help),
    el('div', { class: 'player-bar' }, prevTouch, back, play, forward, nextTouch, loopButton, speedSelect, helpButton, position),
    scrub, status);

  function say(text) {
    status.textContent = text || '';
    status.hidden = !text;
    if (text && options.onError) options.onError(text);
  }

  function timeOf(i) {
    return i >= 0 && i < count ? times[i] : null;
  }

  function setTimes(from, list) {
    const end = Math.min(MAX_TIMES, from + list.length);
    if (end > times.length) {
      const grown = new Float64Array(Math.min(MAX_TIMES, Math.max(end, times.length * 2)));
      grown.set(times.subarray(0, count));
      times = grown;
    }
    for (let i = from; i < end; i++) times[i] = list[i - from];
    count = Math.max(count, end);
    scrub.max = String(Math.max(0, count - 1));
  }

  // ---- the frames source: fetched, decoded, cached

  const cache = new Map(); // frame → { promise, bitmap }
  let inFlight = 0;
  const queue = [];

  function evict() {
    if (cache.size <= CACHE_FRAMES) return;
    const far = [...cache.entries()].filter(([, e]) => e.bitmap)
      .sort((a, b) => Math.abs(b[0] - wanted) - Math.abs(a[0] - wanted));
    for (const [i, e] of far.slice(0, cache.size - CACHE_FRAMES)) {
      e.bitmap.close();
      cache.delete(i);
    }
  }

  function load(i) {
    let entry = cache.get(i);
    if (entry) return entry.promise;
    entry = { bitmap: null, promise: null };
    entry.promise = new Promise((resolve, reject) => queue.push({ i, resolve, reject }))
      .then((bitmap) => {
        if (destroyed) { bitmap.close(); return null; }
        entry.bitmap = bitmap;
        evict();
        return bitmap;
      }, (err) => {
        cache.delete(i);
        throw err;
      });
    cache.set(i, entry);
    pump();
    return entry.promise;
  }

  function pump() {
    // The frames nearest the play head first.
    queue.sort((a, b) => Math.abs(a.i - wanted) - Math.abs(b.i - wanted));
    while (inFlight < MAX_IN_FLIGHT && queue.length) {
      const job = queue.shift();
      inFlight++;
      const deadline = typeof AbortSignal.timeout === 'function' ? AbortSignal.timeout(FETCH_TIMEOUT_MS) : undefined;
      fetch(options.frames.url(job.i), { signal: deadline })
        .then((r) => {
          if (!r.ok) throw new Error('the server answered ' + r.status + ' for frame ' + job.i);
          return r.blob();
        })
        .then((blob) => createImageBitmap(blob))
        .then(job.resolve, job.reject)
        .finally(() => { inFlight--; pump(); });
    }
  }

  function prefetch() {
    if (!options.frames) return;
    const dir = playing || 1;
    const ahead = playing ? Math.ceil(AHEAD * Math.max(1, speed)) : AROUND;
    for (let k = 1; k <= ahead; k++) {
      const i = wanted + dir * k;
      if (i >= 0 && i < count) load(i).catch(() => {});
    }
    if (!playing) {
      for (let k = 1; k <= AROUND; k++) if (wanted - k >= 0) load(wanted - k).catch(() => {});
    }
    // Jobs far from the play head wait behind the near ones; drop the farthest if many.
    queue.sort((a, b) => Math.abs(a.i - wanted) - Math.abs(b.i - wanted));
    while (queue.length > 2 * AHEAD) {
      const job = queue.pop();
      cache.delete(job.i);
      job.reject(new Error('dropped'));
    }
  }

  function draw(bitmap) {
    if (picture.width !== bitmap.width || picture.height !== bitmap.height) {
      picture.width = bitmap.width;
      picture.height = bitmap.height;
    }
    picture.getContext('2d').drawImage(bitmap, 0, 0);
  }

  // ---- the video source: seeks to the middle of a frame's interval

  function middleOf(i) {
    const t = timeOf(i);
    const next = timeOf(i + 1);
    const step = next !== null ? next - t : (count > 1 ? (times[count - 1] - times[0]) / (count - 1) : 1 / 30);
    return t + step / 2;
  }

  /** The frame a <video> shows at media time `seconds` (its frame's own timestamp). */
  function frameAtMedia(seconds) {
    // A millisecond of slack for the container's rounding of times to its time base.
    return indexAt(times, count, seconds + 0.001);
  }

  if (options.video) {
    const watchFrames = () => {
      if (destroyed || typeof picture.requestVideoFrameCallback !== 'function') return;
      picture.requestVideoFrameCallback((now, meta) => {
        if (destroyed) return;
        presented(frameAtMedia(meta.mediaTime));
        watchFrames();
      });
    };
    watchFrames();
    picture.addEventListener('seeked', () => {
      if (!picture.seeking) presented(frameAtMedia(picture.currentTime));
    });
    picture.addEventListener('timeupdate', () => {
      if (typeof picture.requestVideoFrameCallback !== 'function') presented(frameAtMedia(picture.currentTime));
    });
    picture.addEventListener('pause', () => { if (playing > 0) { playing = 0; render(); } });
    picture.addEventListener('error', () => say('The video cannot be played here: '
      + ((picture.error && picture.error.message) || 'unknown error')
      + '. Open video.mp4 in a player that steps frames.'));
  }

  /** The video shows frame `i` (from a frame callback or a finished seek). */
  function presented(i) {
    if (count === 0) return;
    if (playing > 0 && loop && i > loop.to) {
      picture.currentTime = middleOf(loop.from);
      return;
    }
    if (!picture.seeking && playing === 0 && i !== wanted) {
      // A finished seek shows what was asked for; anything else is a late callback.
      if (Math.abs(picture.currentTime - middleOf(wanted)) > 1e-6) return;
    }
    if (playing > 0) wanted = i;
    shown = i;
    render();
    if (shown === wanted) settle(true);
  }

  /** Seeks of the video waiting for their frame to be on screen. */
  let waiters = [];
  function settle(landed) {
    const done = waiters;
    waiters = [];
    for (const resolve of done) resolve(landed);
  }

  // ---- showing a frame

  /** Shows frame `i` (clamped to those stored); resolves once it is on screen. */
  function seek(i) {
    if (count === 0) {
      wanted = Math.max(0, Math.floor(i));
      return Promise.resolve(false);
    }
    wanted = Math.max(0, Math.min(count - 1, Math.floor(i)));
    if (options.video) {
      const target = middleOf(wanted);
      // Resolved once the frame is on screen (a newer seek supersedes an older one).
      const landed = new Promise((resolve) => {
        if (waiters.length >= 16) settle(false);
        waiters.push(resolve);
      });
      if (Math.abs(picture.currentTime - target) < 1e-6 && !picture.seeking) {
        presented(wanted);
      } else {
        picture.currentTime = target;
      }
      render();
      return landed;
    }
    const asked = wanted;
    prefetch();
    return load(asked).then((bitmap) => {
      if (!bitmap || destroyed || asked !== wanted) return false;
      draw(bitmap);
      shown = asked;
      say('');
      render();
      return true;
    }, (err) => {
      if (asked === wanted && err.message !== 'dropped') say('Cannot show frame ' + asked + ': ' + err.message + '. Reload the page to try again.');
      return false;
    });
  }

  function step(delta) {
    pause();
    return seek((shown >= 0 ? wanted : 0) + delta);
  }

  // ---- playing

  function setPlaying(direction) {
    if (count === 0) return;
    if (direction > 0 && wanted >= count - 1 && !live) seek(loop ? loop.from : 0);
    playing = direction;
    anchor = { at: performance.now(), frame: wanted };
    if (options.video) {
      if (direction > 0) {
        picture.playbackRate = speed;
        const started = picture.play();
        if (started && started.catch) started.catch((err) => say('The video does not play: ' + err.message));
      } else {
        picture.pause();
      }
    }
    if (direction !== 0 && !(options.video && direction > 0)) tick();
    render();
  }

  function pause() {
    if (!playing) return;
    playing = 0;
    if (options.video) {
      picture.pause();
      // Stop on a whole frame: the one on screen, at the middle of its interval.
      seek(shown >= 0 ? shown : wanted);
    }
    render();
  }

  /** The play clock, for the frames source both ways and the video backwards. */
  function tick() {
    if (ticking) return;
    ticking = true;
    requestAnimationFrame(function frame(now) {
      if (destroyed || playing === 0 || (options.video && playing > 0)) { ticking = false; return; }
      const start = timeOf(anchor.frame);
      // A frame's timestamp can be before the clock was set: never run the clock backwards.
      const elapsed = Math.max(0, now - anchor.at) / 1000;
      const target = indexAt(times, count, start + playing * elapsed * speed + 1e-9);
      let next = target;
      if (playing < 0 && target >= wanted && wanted > 0) next = wanted; // not yet time
      if (loop && playing > 0 && next > loop.to) {
        next = loop.from;
        anchor = { at: now, frame: loop.from };
      }
      if (playing > 0 && next >= count - 1 && !live && !loop) {
        seek(count - 1);
        playing = 0;
        render();
        ticking = false;
        return;
      }
      if (playing < 0 && next <= 0) {
        seek(0);
        playing = 0;
        render();
        ticking = false;
        return;
      }
      const busy = options.video ? picture.seeking : (cache.get(next) && !cache.get(next).bitmap);
      if (next !== wanted && !busy) {
        if (options.frames && !(cache.get(next) && cache.get(next).bitmap)) {
          // Not here yet: wait for it, and keep the clock from running ahead meanwhile.
          wanted = next;
          seek(next).then(() => { anchor = { at: performance.now(), frame: next }; });
        } else {
          seek(next);
        }
      }
      requestAnimationFrame(frame);
    });
  }

  function setSpeed(s) {
    speed = SPEEDS.includes(s) ? s : 1;
    speedSelect.value = String(speed);
    anchor = { at: performance.now(), frame: wanted };
    if (options.video) picture.playbackRate = speed;
    render();
  }

  // ---- touches

  function seekFrameOf(t) {
    const from = t.actionFrame !== null ? t.actionFrame : t.frame;
    const at = timeOf(Math.min(from, count - 1));
    return at === null ? from : indexAt(times, count, at - PRE_ROLL_S + 1e-9);
  }

  function loopOf(t) {
    const from = t.actionFrame !== null ? t.actionFrame : seekFrameOf(t);
    const at = timeOf(Math.min(t.frame, count - 1));
    const to = at === null ? t.frame : indexAt(times, count, at + POST_ROLL_S + 1e-9);
    return { from, to: Math.max(from, to), touch: t.number };
  }

  function currentTouch() {
    const at = shown >= 0 ? shown : wanted;
    const inside = touches.filter((t) => seekFrameOf(t) <= at && at <= loopOf(t).to);
    if (inside.length) return inside[inside.length - 1];
    return touches.find((t) => seekFrameOf(t) > at) || touches[touches.length - 1] || null;
  }

  function jumpTouch(direction) {
    const at = wanted;
    const order = touches.map((t) => ({ t, f: seekFrameOf(t) })).sort((a, b) => a.f - b.f);
    const pick = direction > 0
      ? order.find((x) => x.f > at)
      : order.filter((x) => x.f < at).pop();
    if (!pick) return;
    pause();
    if (loop && loop.touch !== pick.t.number) loop = null;
    seek(pick.f);
  }

  function toggleLoop() {
    if (loop) {
      loop = null;
      render();
      return;
    }
    const t = currentTouch();
    if (!t || count === 0) return;
    loop = loopOf(t);
    seek(loop.from).then(() => setPlaying(1));
    render();
  }

  // ---- what the page shows

  function render() {
    const i = shown;
    const t = timeOf(i);
    node.dataset.frame = i >= 0 ? String(i) : '';
    node.dataset.wanted = String(wanted);
    // The frame asked for is the one on screen (a seek of the video still running is not).
    node.dataset.settled = i >= 0 && i === wanted && !(options.video && picture.seeking) ? 'yes' : 'no';
    node.dataset.time = t === null ? '' : t.toFixed(6);
    node.dataset.frames = String(count);
    node.dataset.speed = String(speed);
    node.dataset.playing = playing > 0 ? 'forward' : playing < 0 ? 'backward' : 'no';
    node.dataset.loop = loop ? loop.from + '-' + loop.to : '';
    const touch = touches.length ? currentTouch() : null;
    node.dataset.touch = touch ? String(touch.number) : '';
    play.textContent = playing ? '❚❚' : '▶';
    loopButton.classList.toggle('on', Boolean(loop));
    loopButton.setAttribute('aria-pressed', loop ? 'true' : 'false');
    position.textContent = i >= 0
      ? 'frame ' + i + ' of ' + count + (live ? '+' : '') + ' · ' + clock(t) + ' · ' + Math.round(speed * 100) + ' %'
      : (count ? 'loading frame ' + wanted + '…' : 'waiting for frames…');
    if (document.activeElement !== scrub) scrub.value = String(Math.max(0, i));
    // The score after the last scoring event on or before the frame, the last light.
    let score = null, light = null;
    for (const e of events) {
      if (e.frame > i) break;
      if (e.score !== null) score = e.score;
      if (LIGHT[e.kind]) light = e;
    }
    scoreText.textContent = score !== null ? score : (events.length ? '0-0' : '');
    scoreText.hidden = !events.length;
    lightText.textContent = light ? (light.side && light.kind !== 'double' ? light.side + ' ' : '') + LIGHT[light.kind] + ' · #' + light.number : '';
    lightText.className = 'player-light' + (light ? ' s-' + (light.kind === 'double' ? 'both' : light.side) : '');
    lightText.hidden = !light;
    clockText.textContent = t === null ? '' : clock(t);
    if (i >= 0 && options.onFrame && !playing) options.onFrame(i, t);
    if (i >= 0 && i !== lastShown && options.onShown) options.onShown(i, t);
    lastShown = i;
  }

  // ---- input

  function onKey(e) {
    if (destroyed || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target;
    if (target && target.closest && target.closest('input:not(.player-scrub), select, textarea, [contenteditable]')) return;
    if (!node.isConnected) return;
    const k = e.key;
    const actions = {
      ArrowLeft: () => step(-1), ArrowRight: () => step(1),
      ' ': () => (playing ? pause() : setPlaying(1)),
      j: () => setPlaying(-1), J: () => setPlaying(-1),
      k: () => pause(), K: () => pause(),
      l: () => setPlaying(1), L: () => setPlaying(1),
      '[': () => jumpTouch(-1), PageUp: () => jumpTouch(-1),
      ']': () => jumpTouch(1), PageDown: () => jumpTouch(1),
      a: () => toggleLoop(), A: () => toggleLoop(),
      '?': () => { help.hidden = !help.hidden; },
      Escape: () => { help.hidden = true; },
    };
    const act = actions[k];
    if (!act) return;
    e.preventDefault();
    act();
  }
  if (!options.follower) document.addEventListener('keydown', onKey);
  prevTouch.addEventListener('click', () => jumpTouch(-1));
  back.addEventListener('click', () => step(-1));
  play.addEventListener('click', () => (playing ? pause() : setPlaying(1)));
  forward.addEventListener('click', () => step(1));
  nextTouch.addEventListener('click', () => jumpTouch(1));
  loopButton.addEventListener('click', () => toggleLoop());
  helpButton.addEventListener('click', () => { help.hidden = !help.hidden; });
  speedSelect.addEventListener('change', () => setSpeed(Number(speedSelect.value)));
  scrub.addEventListener('input', () => { pause(); seek(Number(scrub.value)); });

  // ---- frame times

  let timesLoading = false;
  let pollTimer = null;

  async function loadTimes() {
    if (!options.frames || timesLoading || destroyed) return;
    timesLoading = true;
    try {
      for (;;) {
        const from = count;
        if (from >= MAX_TIMES) break;
        const got = await options.frames.times(from, TIMES_PER_REQUEST);
        if (destroyed) return;
        const list = Array.isArray(got.pts_us) ? got.pts_us.map((v) => (finite(v) || 0) / 1e6) : [];
        const had = count;
        setTimes(from, list);
        if (had === 0 && count > 0) seek(wanted);
        else render();
        if (list.length < TIMES_PER_REQUEST) break;
      }
    } catch (err) {
      say('Cannot read the frame times: ' + err.message + '. Reload the page to try again.');
    } finally {
      timesLoading = false;
    }
    clearTimeout(pollTimer);
    if (live && !destroyed) pollTimer = setTimeout(loadTimes, LIVE_POLL_MS);
  }

  if (options.video) {
    const list = Array.isArray(options.video.times) ? options.video.times : [];
    setTimes(0, list.map((v) => finite(v) || 0));
  }

  const player = {
    node,
    /** The report's events (see `eventsOf`). */
    setEvents(list) {
      events.length = 0;
      for (const e of list || []) events.push(e);
      events.sort((a, b) => a.frame - b.frame);
      const scoring = events.filter((e) => LIGHT[e.kind]);
      touches = scoring.length ? scoring : events.filter((e) => e.kind !== 'halt' && e.kind !== 'period');
      render();
    },
    /** Whether frames are still arriving (the frame index is then asked for again). */
    setLive(value) {
      const was = live;
      live = Boolean(value);
      if (live && !was) loadTimes();
      if (!live && was) loadTimes();
      render();
    },
    seek(frame) { pause(); return seek(frame); },
    /** Shows the frame on screen at `seconds` of this player's clock (the first or the last
     * frame outside them); resolves once it is on screen. */
    seekTime(seconds) {
      if (count === 0 || finite(seconds) === null) return Promise.resolve(false);
      pause();
      return seek(seconds < times[0] ? 0 : indexAt(times, count, seconds + 1e-9));
    },
    /** Opens the start of touch `number`'s action (minus the pre-roll). */
    openTouch(number) {
      const t = events.find((e) => e.number === number);
      if (t) { pause(); seek(seekFrameOf(t)); }
    },
    get frame() { return shown; },
    /** The time of the frame on screen, in seconds of this player's clock (null before one). */
    get time() { return timeOf(shown); },
    destroy() {
      destroyed = true;
      clearTimeout(pollTimer);
      document.removeEventListener('keydown', onKey);
      for (const e of cache.values()) if (e.bitmap) e.bitmap.close();
      cache.clear();
      if (options.video) {
        settle(false);
        picture.pause();
        picture.removeAttribute('src');
        picture.load();
      }
    },
  };
  player.setEvents(options.events || []);
  wanted = Math.max(0, Math.floor(finite(options.start) || 0));
  if (options.frames) loadTimes();
  else if (count > 0) seek(wanted);
  render();
  return player;
}

/** The `FRAME` of a `#t=FRAME` address, or null. */
function hashFrame(hash) {
  const m = /^#t=(\d+)$/.exec(hash || '');
  return m ? Number(m[1]) : null;
}

/**
 * On report.html: the player on the page's video.mp4, with the frame times and events of
 * its `#player-data`, in place of the plain <video>. `#t=FRAME` opens a frame; a click on a
 * time (`<a data-seek="SECONDS">`) seeks the player.
 */
function startReportPage() {
  const holder = document.getElementById('player-data');
  const video = document.getElementById('video');
  if (!holder || !video) return;
  let data;
  try { data = JSON.parse(holder.getAttribute('data-player') || '{}'); } catch (_) { return; }
  const src = video.getAttribute('src') || '';
  if (!/\.mp4($|[?#])/.test(src)) return;
  const fps = finite(data.fps) || 0;
  const frames = Math.min(MAX_TIMES, Math.max(0, Math.floor(finite(data.frames) || 0)));
  let times = Array.isArray(data.frame_times_s) ? data.frame_times_s.map((v) => finite(v) || 0) : null;
  if ((!times || !times.length) && fps > 0) {
    // At a constant rate, frame i is at i / fps (in whole microseconds, as the client sends).
    times = [];
    for (let i = 0; i < frames; i++) times.push(Math.round(i * 1e6 / fps) / 1e6);
  }
  if (!times || !times.length) return;
  const player = create({
    video: { src, times },
    events: eventsOf(data),
    start: hashFrame(location.hash) || 0,
  });
  video.replaceWith(player.node);
  // The page's links and scripts know the player's video by the plain one's id.
  player.node.querySelector('video').id = 'video';
  window.addEventListener('hashchange', () => {
    const frame = hashFrame(location.hash);
    if (frame !== null) player.seek(frame);
  });
  document.addEventListener('click', (e) => {
    const a = e.target.closest ? e.target.closest('a[data-seek], a[href^="#t="]') : null;
    if (!a) return;
    e.preventDefault();
    const frame = a.hasAttribute('data-seek')
      ? indexAt(times, times.length, parseFloat(a.getAttribute('data-seek')) + 1e-9)
      : hashFrame(a.getAttribute('href'));
    if (frame !== null) player.seek(frame);
    player.node.scrollIntoView({ block: 'nearest' });
  });
}

/** The player, for the dashboard's session page (`import { RefereePlayer } from './player.js'`). */
export const RefereePlayer = { create, eventsOf, indexAt, SPEEDS, PRE_ROLL_S, POST_ROLL_S };
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', startReportPage);
else startReportPage();
