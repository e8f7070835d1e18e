// jobfleet dashboard: fills the page from the live stream (server-sent events).
//
// Every value that came from a job (ids, task names, payloads, results,
// errors) reaches the page as a text node or through textContent: nothing is
// ever parsed as HTML, so a job cannot put markup or script on this page.
'use strict';

(() => {
  const token = new URLSearchParams(location.search).get('token');
  const HISTORY = 300;
  const FEED_MAX = 200;
  const JOBS_LIMIT = 100;
  // The least time between re-reads of the job list as the queue's counts
  // change, so a busy queue costs a browse every few seconds, not every one.
  const JOBS_EVERY = 3000;
  // How often the schedules are read again (they are not in the stream).
  const SCHEDULES_EVERY = 5000;

  let stats = null; // the latest `stats` message
  let history = []; // throughput points, oldest first
  let feed = []; // events, newest first
  let paused = false;
  let selected = null; // the queue whose jobs and dead letters are listed
  let deadSeen = null; // its dead count when the dead letters were last read
  let jobsSeen = null; // its count in the browsed state when the jobs were last read
  let jobsRead = 0; // when they were last read (this host's clock)
  let jobsAsked = 0; // counts the reads, so only the latest one is shown
  let browsed = null; // {queue, state, task, jobs, error} of the jobs listed
  let job = null; // {id, queue, note} of the job shown in detail
  let schedulesAsked = 0; // counts the reads of the schedules, so only the latest one is shown
  let frame = 0;

  const $ = (id) => document.getElementById(id);

  // An element with attributes and children; strings become text nodes.
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'onclick') node.addEventListener('click', value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function fill(parent, nodes) {
    parent.replaceChildren(...nodes);
  }

  // ---- formatting -------------------------------------------------------

  const num = (n) => Number(n || 0).toLocaleString('en-US');
  const rate = (r) => (r >= 100 ? Math.round(r).toLocaleString('en-US') : (Math.round(r * 10) / 10).toString());

  function ms(d) {
    if (d === null || d === undefined) return '–';
    if (d < 1000) return d + ' ms';
    if (d < 60000) return (d / 1000).toFixed(d < 10000 ? 2 : 1) + ' s';
    return (d / 60000).toFixed(1) + ' min';
  }

  function clock(t) {
    if (!t) return '–';
    return new Date(t).toLocaleTimeString('en-GB', { hour12: false });
  }

  function when(t, short) {
    if (!t) return '–';
    const d = new Date(t);
    const time = d.toLocaleTimeString('en-GB', { hour12: false });
    if (short && d.toDateString() === new Date().toDateString()) return time;
    return d.toLocaleDateString('en-CA') + ' ' + time;
  }

  function ago(t) {
    if (!stats || !stats.now_ms || !t) return '–';
    const d = Math.max(0, stats.now_ms - t);
    return d < 60000 ? (d / 1000).toFixed(1) + ' s ago' : Math.round(d / 60000) + ' min ago';
  }

  // How long from Redis time `t` to now, or from now to `t` when it is to come.
  function span(t) {
    if (!stats || !stats.now_ms || !t) return '–';
    return ms(Math.abs(stats.now_ms - t));
  }

  const badge = (state) => h('span', { class: 'badge ' + state }, state);

  // Set in a message: serde leaves a `None` out, or writes it as null.
  const given = (v) => v !== undefined && v !== null;

  // Long ids (UUIDs) are shortened in lists; the detail shows them whole.
  const shortId = (id) => (id.length > 20 ? id.slice(0, 8) + '…' + id.slice(-6) : id);
  const idButton = (id, queue) =>
    h('button', { type: 'button', class: 'id', title: id, onclick: () => showJob(id, queue) }, shortId(id));

  // ---- talking to the server ---------------------------------------------

  async function api(path, method, body) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method: method || 'GET', headers };
    if (init.method !== 'GET') {
      // The CSRF defence: a cross-site form cannot send this header.
      headers['X-Jobfleet'] = '1';
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body || {});
    }
    const res = await fetch(path, init);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.error || res.status + ' ' + res.statusText);
    return data;
  }

  function connect() {
    const url = '/api/stream' + (token ? '?token=' + encodeURIComponent(token) : '');
    const source = new EventSource(url);
    source.addEventListener('open', () => setConnection('live', 'live'));
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        setConnection('down', 'disconnected');
        banner('The dashboard refused the stream (a wrong token, or too many pages open) or stopped. Reload to try again.');
      } else {
        setConnection('connecting', 'reconnecting…');
      }
    });
    source.addEventListener('snapshot', (e) => {
      const snapshot = JSON.parse(e.data);
      history = snapshot.history || [];
      feed = (snapshot.events || []).reverse();
      if (snapshot.stats) onStats(snapshot.stats, false);
      schedule();
    });
    source.addEventListener('stats', (e) => onStats(JSON.parse(e.data), true));
    source.addEventListener('events', (e) => onEvents(JSON.parse(e.data)));
    source.addEventListener('resync', () => note('Reconnected to Redis: events published meanwhile were missed.'));
    source.addEventListener('lagged', () => note('This page fell behind; some events were skipped.'));
  }

  function setConnection(state, text) {
    const pill = $('conn');
    pill.dataset.state = state;
    pill.textContent = text;
  }

  function banner(text) {
    const el = $('banner');
    el.textContent = text || '';
    el.hidden = !text;
  }

  function note(text) {
    $('feed-count').textContent = text;
  }

  // ---- live updates --------------------------------------------------------

  function onStats(message, live) {
    stats = message;
    if (live && message.point) {
      history.push(message.point);
      if (history.length > HISTORY) history.splice(0, history.length - HISTORY);
    }
    banner(message.error ? 'Redis is unreachable: ' + message.error + ' (figures are stale)' : '');
    renderSummary();
    renderQueues();
    renderWorkers();
    renderLatency();
    syncQueues();
    renderJobs();
    schedule();
  }

  function onEvents(events) {
    let progressed = false;
    for (const event of events) {
      // Progress reports update the job shown and the running jobs listed, not the feed.
      if (event.state !== 'progress') feed.unshift(event);
      else if (listedProgress(event)) progressed = true;
      if (job && event.id === job.id) showJob(job.id, job.queue, true);
    }
    if (progressed) renderJobs();
    if (feed.length > FEED_MAX) feed.length = FEED_MAX;
    schedule();
  }

  // A progress report of a running job the Jobs card lists: kept, so it shows
  // at once rather than at the next read of the list. True when it was one.
  function listedProgress(event) {
    if (!browsed || browsed.state !== 'active' || browsed.queue !== event.queue) return false;
    const j = browsed.jobs.find((j) => j.id === event.id);
    if (!j) return false;
    j.progress = event.progress;
    j.progress_message = event.message;
    return true;
  }

  // The feed and the chart are drawn at most once a frame, however many
  // messages arrive.
  function schedule() {
    if (!frame) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        if (!paused) renderFeed();
        drawChart();
      });
    }
  }

  // ---- rendering -------------------------------------------------------------

  function renderSummary() {
    const queues = stats.queues || [];
    const sum = (key) => queues.reduce((n, q) => n + (q[key] || 0), 0);
    const last = history[history.length - 1];
    $('sum-rate').textContent = rate(last ? last.completed : 0);
    $('sum-pending').textContent = num(sum('pending'));
    $('sum-active').textContent = num(sum('active'));
    $('sum-workers').textContent = num((stats.workers || []).length);
    const redis = stats.redis || { replicas: [] };
    const lag = redis.replicas.reduce((n, r) => Math.max(n, r.lag_bytes || 0), 0);
    $('sum-redis').textContent = 'primary ' + (redis.primary || '?') +
      (redis.master_name ? ' (sentinel ' + redis.master_name + ')' : '') +
      ' · ' + redis.replicas.length + ' replicas' +
      (redis.replicas.length ? ', max lag ' + num(lag) + ' B' : '');
    $('sum-redis').title = redis.replicas.map((r) => r.addr + ' ' + r.state + ', ' + r.lag_bytes + ' B, ' + r.lag_secs + ' s').join('\n');
    $('rate-completed').textContent = rate(last ? last.completed : 0);
    $('rate-failed').textContent = rate(last ? last.failed : 0);
  }

  const QUEUE_COLUMNS = ['pending', 'scheduled', 'active', 'dead', 'completed', 'failed', 'retried', 'cancelled'];

  // A queue's limits, under its name when it has any: `≤10 running · 100/s`.
  function limits(q) {
    const short = [];
    const long = [];
    if (given(q.concurrency_limit)) {
      short.push('≤' + num(q.concurrency_limit) + ' running');
      long.push('at most ' + num(q.concurrency_limit) + ' jobs running at once');
    }
    if (given(q.rate_limit)) {
      short.push(rate(q.rate_limit) + '/s');
      long.push('at most ' + rate(q.rate_limit) + ' jobs started a second');
    }
    if (!short.length) return null;
    return h('div', { class: 'limits', title: long.join(', ') + ', fleet-wide' }, short.join(' · '));
  }

  function renderQueues() {
    const queues = stats.queues || [];
    $('queues-empty').hidden = queues.length > 0;
    const rows = queues.map((q) => {
      const cells = QUEUE_COLUMNS.map((col) => {
        const value = q[col] || 0;
        const cls = value === 0 ? 'zero' : col === 'dead' ? 'hot' : null;
        return h('td', { 'data-col': col, class: cls }, num(value));
      });
      // The queue's latency: how long its oldest pending job has waited.
      const oldest = h('td', { 'data-col': 'oldest', class: q.pending ? null : 'zero' },
        ms(q.pending ? q.oldest_pending_ms : null));
      const toggle = h('button', {
        type: 'button',
        class: 'pause',
        onclick: (e) => {
          e.stopPropagation(); // not also a click on the row
          setPaused(q.name, !q.paused);
        },
      }, q.paused ? 'Resume' : 'Pause');
      const row = h('tr', { 'data-queue': q.name, class: q.name === selected ? 'selected' : null },
        h('td', { class: 'text' }, q.name, q.paused ? badge('paused') : null, limits(q)),
        ...cells, oldest, h('td', null, toggle));
      row.addEventListener('click', () => {
        selectQueue(q.name);
        $('jobs-card').scrollIntoView({ behavior: 'smooth', block: 'start' });
      });
      return row;
    });
    fill($('queues').tBodies[0], rows);
    fill($('unserved'), (stats.unserved || []).map((u) =>
      h('li', { 'data-queue': u.queue, 'data-task': u.task }, u.text)));
  }

  async function setPaused(queue, pause) {
    const action = pause ? 'pause' : 'resume';
    try {
      const reply = await api('/api/queues/' + encodeURIComponent(queue) + '/' + action, 'POST');
      const was = reply.paused ? ' was already paused.' : ' was not paused.';
      note('Queue ' + queue + (reply.changed ? (reply.paused ? ' paused.' : ' resumed.') : was));
      // Shown at once, not at the next stats message.
      const q = stats.queues.find((q) => q.name === queue);
      if (q) q.paused = reply.paused;
      renderQueues();
    } catch (err) {
      note('Could not ' + action + ' ' + queue + ': ' + err.message);
    }
  }

  function renderWorkers() {
    const workers = stats.workers || [];
    $('workers-empty').hidden = workers.length > 0;
    fill($('workers').tBodies[0], workers.map((w) => {
      const share = w.concurrency ? Math.min(1, w.active / w.concurrency) : 0;
      const fillBar = h('i');
      fillBar.style.width = Math.round(share * 100) + '%';
      return h('tr', { 'data-worker': w.id, 'data-pid': w.pid },
        h('td', { class: 'text mono', title: w.id }, w.id),
        h('td', { class: 'text' }, w.host),
        h('td', null, String(w.pid)),
        h('td', { class: 'text' }, (w.queues || []).join(', ')),
        h('td', null, w.active + ' / ' + w.concurrency, h('span', { class: 'bar' }, fillBar)),
        h('td', null, num(w.processed)),
        h('td', null, ago(w.last_heartbeat_ms)));
    }));
  }

  function renderLatency() {
    const rows = stats.latency || [];
    $('latency-empty').hidden = rows.length > 0;
    fill($('latency').tBodies[0], rows.map((l) =>
      h('tr', { 'data-task': l.task },
        h('td', { class: 'text' }, l.task),
        h('td', null, num(l.samples)),
        h('td', null, ms(l.p50_ms)),
        h('td', null, ms(l.p95_ms)))));
  }

  function renderFeed() {
    $('feed-empty').hidden = feed.length > 0;
    if (!paused) note(feed.length ? feed.length + ' latest' : '');
    fill($('feed'), feed.map((e) => {
      const meta = ['attempt ' + e.attempt];
      if (e.duration_ms !== undefined && e.duration_ms !== null) meta.push(ms(e.duration_ms));
      if (e.worker) meta.push(e.worker);
      return h('li', { 'data-id': e.id, 'data-state': e.state },
        h('span', { class: 'time' }, clock(e.ms)),
        h('span', null, badge(e.state)),
        h('span', { class: 'what' },
          e.task + ' · ' + e.queue + ' · ', idButton(e.id, e.queue),
          e.error ? h('span', { class: 'err' }, ' — ' + e.error) : null),
        h('span', { class: 'meta' }, meta.join(' · ')));
    }));
  }

  // A nice round top for the chart's scale.
  function niceMax(v) {
    const step = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * step) return m * step;
    return 10 * step;
  }

  function drawChart() {
    const canvas = $('chart');
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();

    const peak = history.reduce((m, p) => Math.max(m, p.completed + p.failed), 0);
    const top = niceMax(Math.max(peak, 1));
    const pad = 6;
    const x = (i) => ((i + HISTORY - history.length + 0.5) / HISTORY) * width;
    const y = (v) => height - pad - (v / top) * (height - 2 * pad);

    ctx.strokeStyle = color('--line');
    ctx.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      ctx.beginPath();
      ctx.moveTo(0, Math.round(y(top * f)) + 0.5);
      ctx.lineTo(width, Math.round(y(top * f)) + 0.5);
      ctx.stroke();
    }
    ctx.fillStyle = color('--muted');
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillText(rate(top) + '/s', 4, pad + 10);

    // One stacked bar a second: completed, with failed on top.
    const slot = width / HISTORY;
    const bar = Math.max(1, slot - (slot > 3 ? 1 : 0));
    history.forEach((p, i) => {
      const left = x(i) - slot / 2;
      const done = y(0) - y(p.completed);
      const failed = y(0) - y(p.failed);
      ctx.fillStyle = color('--ok');
      ctx.fillRect(left, y(0) - done, bar, done);
      ctx.fillStyle = color('--bad');
      ctx.fillRect(left, y(0) - done - failed, bar, failed);
    });
    $('chart-max').textContent = history.length ? 'peak ' + rate(peak) + '/s' : 'waiting for data…';
  }

  // ---- the selected queue ----------------------------------------------------

  // The queue choosers of the jobs and the dead letters: both show `selected`.
  const QUEUE_SELECTS = ['jobs-queue', 'dead-queue'];

  function syncQueues() {
    const names = (stats.queues || []).map((q) => q.name);
    for (const id of QUEUE_SELECTS) {
      const select = $(id);
      const current = Array.from(select.options).map((o) => o.value);
      if (current.join('\n') !== names.join('\n')) {
        fill(select, names.map((n) => h('option', { value: n }, n)));
      }
    }
    if (!names.includes(selected)) {
      // Start on the queue with the most dead jobs.
      const worst = (stats.queues || []).reduce((a, q) => (!a || q.dead > a.dead ? q : a), null);
      if (worst) selectQueue(worst.name);
      return;
    }
    for (const id of QUEUE_SELECTS) $(id).value = selected;
    const q = stats.queues.find((q) => q.name === selected);
    if (q.dead !== deadSeen) loadDead();
    if (q[$('jobs-state').value] !== jobsSeen && Date.now() - jobsRead >= JOBS_EVERY) loadJobs();
  }

  function selectQueue(name) {
    selected = name;
    for (const id of QUEUE_SELECTS) $(id).value = name;
    for (const row of $('queues').tBodies[0].rows) {
      row.classList.toggle('selected', row.dataset.queue === name);
    }
    loadJobs();
    loadDead();
  }

  // ---- jobs by state -----------------------------------------------------------

  // Per browsable state: the time column's title, and what it says of a job.
  const JOB_TIMES = {
    pending: ['waiting', (j) => span(Math.max(j.created_ms, j.run_at_ms || 0))],
    scheduled: ['runs in', (j) => span(j.run_at_ms)],
    active: ['running', (j) => span(j.started_ms)],
    dead: ['died', (j) => ago(j.finished_ms)],
  };

  async function loadJobs() {
    const queue = selected;
    if (!queue) return;
    const state = $('jobs-state').value;
    const task = $('jobs-task').value.trim();
    const asked = ++jobsAsked;
    const q = stats && stats.queues.find((q) => q.name === queue);
    jobsSeen = q ? q[state] : null;
    jobsRead = Date.now();
    const query = '?state=' + state + '&limit=' + JOBS_LIMIT + (task ? '&task=' + encodeURIComponent(task) : '');
    let jobs = [];
    let error = null;
    try {
      jobs = await api('/api/queues/' + encodeURIComponent(queue) + '/jobs' + query);
    } catch (err) {
      error = err.message;
    }
    if (asked !== jobsAsked) return;
    browsed = { queue, state, task, jobs, error };
    renderJobs();
  }

  // How far a running job has come, as its task last reported: `40% · resizing`.
  function progressCell(j) {
    if (!given(j.progress)) return h('td', { class: 'text progress zero', 'data-col': 'progress' }, '–');
    const share = Math.min(1, Math.max(0, j.progress));
    const said = Math.round(share * 100) + '%' + (j.progress_message ? ' · ' + j.progress_message : '');
    const fillBar = h('i');
    fillBar.style.width = Math.round(share * 100) + '%';
    return h('td', { class: 'text progress', 'data-col': 'progress', title: said },
      h('span', { class: 'said' }, said), h('span', { class: 'bar' }, fillBar));
  }

  // Drawn again with every stats message, so the times stay current.
  function renderJobs() {
    if (!browsed) return;
    const { queue, state, task, jobs, error } = browsed;
    const [title, time] = JOB_TIMES[state];
    const active = state === 'active';
    $('jobs-age').textContent = title;
    $('jobs-progress').hidden = !active;
    const empty = $('jobs-empty');
    empty.textContent = error
      ? 'Could not list jobs: ' + error
      : 'No ' + state + ' job' + (task ? ' of task ' + task : '') + ' in ' + queue + '.';
    empty.hidden = jobs.length > 0;
    fill($('jobs').tBodies[0], jobs.map((j) =>
      h('tr', { 'data-id': j.id },
        h('td', { class: 'text' }, idButton(j.id, j.queue)),
        h('td', { class: 'text' }, j.task),
        h('td', null, j.attempts + ' / ' + j.max_attempts),
        h('td', { 'data-col': 'age' }, time(j)),
        active ? progressCell(j) : null,
        h('td', { class: 'error', title: j.error || '' }, j.error || ''))));
  }

  // ---- dead letters ----------------------------------------------------------

  async function loadDead() {
    const queue = selected;
    const q = stats && stats.queues.find((q) => q.name === queue);
    deadSeen = q ? q.dead : null;
    let jobs;
    try {
      jobs = await api('/api/queues/' + encodeURIComponent(queue) + '/dead?limit=100');
    } catch (err) {
      note('Could not read dead letters: ' + err.message);
      return;
    }
    if (queue !== selected) return;
    $('dead-empty').hidden = jobs.length > 0;
    $('dead-retry-all').disabled = jobs.length === 0;
    $('dead-purge-all').disabled = jobs.length === 0;
    fill($('dead').tBodies[0], jobs.map((j) =>
      h('tr', { 'data-id': j.id },
        h('td', { class: 'text' }, idButton(j.id, j.queue)),
        h('td', { class: 'text' }, j.task),
        h('td', null, j.attempts + ' / ' + j.max_attempts),
        h('td', { class: 'error', title: j.error || '' }, j.error || ''),
        h('td', null, when(j.finished_ms, true)),
        h('td', null,
          h('button', { type: 'button', class: 'retry', onclick: () => deadAction('retry', [j.id]) }, 'Retry'),
          h('button', { type: 'button', class: 'purge danger', onclick: () => deadAction('purge', [j.id]) }, 'Purge')))));
  }

  async function deadAction(action, ids) {
    const queue = selected;
    const all = ids === null;
    if (all && !confirm(action === 'retry' ? 'Retry every dead job of ' + queue + '?' : 'Delete every dead job of ' + queue + ' for good?')) return;
    try {
      const body = all ? { all: true } : { ids };
      const reply = await api('/api/queues/' + encodeURIComponent(queue) + '/dead/' + action, 'POST', body);
      const n = action === 'retry' ? reply.retried : reply.purged;
      note((action === 'retry' ? 'Retried ' : 'Purged ') + n + ' dead job' + (n === 1 ? '' : 's') + ' of ' + queue + '.');
    } catch (err) {
      note('Could not ' + action + ': ' + err.message);
    }
    loadDead();
  }

  // ---- schedules -----------------------------------------------------------------

  // Read every SCHEDULES_EVERY and after each action, not with every stats message.
  async function loadSchedules() {
    const asked = ++schedulesAsked;
    let schedules = [];
    let error = null;
    try {
      schedules = await api('/api/schedules');
    } catch (err) {
      error = err.message;
    }
    if (asked !== schedulesAsked) return;
    renderSchedules(schedules, error);
  }

  // When a schedule fires, as `jobfleet schedule list` says it. The server
  // sends that text as `describe`; this is for when it does not.
  function describeWhen(w) {
    if (w && w.every) return 'every ' + ms(w.every.every_ms);
    if (w && w.cron) return 'cron "' + w.cron.cron + '" (' + (w.cron.tz || 'UTC') + ')';
    return '?';
  }

  function renderSchedules(schedules, error) {
    const empty = $('schedules-empty');
    empty.textContent = error
      ? 'Could not list schedules: ' + error
      : 'No schedule: add one with jobfleet schedule add NAME TASK --every 1h.';
    empty.hidden = schedules.length > 0;
    fill($('schedules').tBodies[0], schedules.map((s) => {
      const next = s.paused ? badge('paused') : given(s.next_ms) ? when(s.next_ms, true) : 'never';
      // The last tick's job opens in the detail, like any other id.
      const last = s.last_job ? idButton(s.last_job, s.queue) : '–';
      return h('tr', { 'data-queue': s.queue, 'data-name': s.name, class: s.paused ? 'paused' : null },
        h('td', { class: 'text' }, s.name, h('div', { class: 'sub' }, 'queue ' + s.queue)),
        h('td', { class: 'text' }, s.task),
        h('td', { class: 'text when', title: 'payload ' + JSON.stringify(s.payload) }, s.describe || describeWhen(s.when)),
        h('td', { 'data-col': 'next', title: given(s.next_ms) ? when(s.next_ms) : null }, next),
        h('td', { class: 'text', 'data-col': 'last', title: given(s.last_ms) ? 'the tick of ' + when(s.last_ms) : null }, last),
        h('td', null,
          h('button', { type: 'button', class: 'pause', onclick: () => scheduleAction(s, s.paused ? 'resume' : 'pause') },
            s.paused ? 'Resume' : 'Pause'),
          h('button', { type: 'button', class: 'remove danger', onclick: () => scheduleAction(s, 'remove') }, 'Remove')));
    }));
  }

  async function scheduleAction(s, action) {
    const what = 'schedule ' + s.name + ' of ' + s.queue;
    if (action === 'remove' && !confirm('Remove ' + what + '? The jobs it submitted stay.')) return;
    const path = '/api/queues/' + encodeURIComponent(s.queue) + '/schedules/' + encodeURIComponent(s.name) + '/' + action;
    let text;
    try {
      const reply = await api(path, 'POST');
      if (action === 'remove') text = 'Removed ' + what + '; the jobs it submitted stay.';
      else if (!reply.changed) text = 'The ' + what + (reply.paused ? ' was already paused.' : ' was not paused.');
      else text = reply.paused ? 'Paused ' + what + '.' : 'Resumed ' + what + ': it goes on from its next tick.';
    } catch (err) {
      text = 'Could not ' + action + ' ' + what + ': ' + err.message;
    }
    $('schedules-note').textContent = text;
    loadSchedules();
  }

  // ---- job detail --------------------------------------------------------------

  // Shows a job; `quiet` refreshes the one shown (after an event or an action)
  // and keeps its note.
  async function showJob(id, queue, quiet) {
    const note = quiet && job && job.id === id ? job.note : '';
    job = { id, queue, note };
    const box = $('job');
    if (!quiet) {
      $('lookup-id').value = id;
      fill(box, [h('p', { class: 'empty' }, 'Loading…')]);
      $('job-card').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    }
    let j;
    try {
      j = await api('/api/jobs/' + encodeURIComponent(id) + (queue ? '?queue=' + encodeURIComponent(queue) : ''));
    } catch (err) {
      if (job && job.id === id) fill(box, [h('p', { class: 'empty' }, err.message)]);
      return;
    }
    if (!job || job.id !== id) return;
    job.queue = j.queue;
    // The job's own URL (see openLinkedJob).
    const hash = '#job=' + encodeURIComponent(j.queue) + '/' + encodeURIComponent(j.id);
    if (!quiet && location.hash !== hash) location.hash = hash;
    const rows = [
      ['id', j.id, 'mono'],
      ['state', badge(j.state)],
      ['queue', j.queue],
      ['task', j.task],
      ['attempts', j.attempts + ' of ' + j.max_attempts + (j.recoveries ? ' (' + j.recoveries + ' recovered)' : '')],
      ['worker', j.worker || '–', 'mono'],
      ['created', when(j.created_ms)],
      ['run at', j.run_at_ms ? when(j.run_at_ms) : null],
      ['started', j.started_ms ? when(j.started_ms) : null],
      ['finished', j.finished_ms ? when(j.finished_ms) : null],
      // A retried or cancelled job keeps its last start: only a run's own end measures it.
      ['took', ['completed', 'dead'].includes(j.state) && j.started_ms && j.finished_ms ? ms(j.finished_ms - j.started_ms) : null],
      ['timeout', ms(j.timeout_ms)],
      ['progress', j.progress !== undefined
        ? Math.round(j.progress * 100) + '%' + (j.progress_message ? ' (' + j.progress_message + ')' : '')
        : null],
    ].filter((r) => r[1] !== null);
    const list = h('dl', { class: 'detail' });
    for (const [label, value, cls] of rows) list.append(h('dt', null, label), h('dd', { class: cls }, value));
    const nodes = [list, h('div', { class: 'label' }, 'payload'), h('pre', { id: 'job-payload' }, JSON.stringify(j.payload, null, 2))];
    if (j.result !== undefined) {
      nodes.push(h('div', { class: 'label' }, 'result'), h('pre', { id: 'job-result' }, JSON.stringify(j.result, null, 2)));
    }
    if (j.error !== undefined) {
      nodes.push(h('div', { class: 'label' }, 'error'), h('pre', { id: 'job-error', class: 'error' }, j.error));
    }
    if (['pending', 'scheduled', 'active'].includes(j.state)) {
      nodes.push(h('button', { type: 'button', id: 'job-cancel', class: 'danger', onclick: () => cancelJob(j.id, j.queue) },
        j.state === 'active' ? 'Cancel (ask its worker)' : 'Cancel'));
    }
    if (j.state === 'dead') {
      nodes.push(h('button', { type: 'button', id: 'job-retry', onclick: () => retryJob(j.id, j.queue) }, 'Retry'));
    }
    nodes.push(h('p', { class: 'note', id: 'job-note' }, job.note));
    fill(box, nodes);
  }

  // Runs `act` on the job shown, then shows the job afresh with the note
  // `act` returns (or why it failed).
  async function jobAction(id, queue, verb, act) {
    let note;
    try {
      note = await act();
    } catch (err) {
      note = 'Could not ' + verb + ': ' + err.message;
    }
    if (job && job.id === id) {
      job.note = note;
      showJob(id, queue, true);
    }
  }

  function cancelJob(id, queue) {
    jobAction(id, queue, 'cancel', async () => {
      const reply = await api('/api/jobs/' + encodeURIComponent(id) + '/cancel?queue=' + encodeURIComponent(queue), 'POST');
      return { cancelled: 'Cancelled.', cancelling: 'Its worker was asked to stop it.' }[reply.outcome]
        || 'Already ' + reply.state + '.';
    });
  }

  function retryJob(id, queue) {
    jobAction(id, queue, 'retry', async () => {
      const reply = await api('/api/queues/' + encodeURIComponent(queue) + '/dead/retry', 'POST', { ids: [id] });
      return reply.retried ? 'Retried: pending again.' : 'It is no longer dead.';
    });
  }

  // A job's URL is the page's with `#job=<queue>/<id>`, both parts
  // URL-encoded: opens the job it names, unless it is the one shown.
  function openLinkedJob() {
    const link = /^#job=([^/]*)\/(.+)$/.exec(location.hash);
    if (!link) return;
    let queue, id;
    try {
      queue = decodeURIComponent(link[1]) || null;
      id = decodeURIComponent(link[2]);
    } catch (err) {
      return; // a malformed escape: no job named
    }
    if (!job || job.id !== id || (queue && job.queue !== queue)) showJob(id, queue);
  }

  // ---- wiring ------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('lookup').addEventListener('submit', (e) => {
      e.preventDefault();
      const id = $('lookup-id').value.trim();
      if (id) showJob(id, null);
    });
    $('jobs-queue').addEventListener('change', (e) => selectQueue(e.target.value));
    $('jobs-state').addEventListener('change', loadJobs);
    $('jobs-task').addEventListener('change', loadJobs);
    $('jobs-refresh').addEventListener('click', loadJobs);
    $('dead-queue').addEventListener('change', (e) => selectQueue(e.target.value));
    $('schedules-refresh').addEventListener('click', loadSchedules);
    $('dead-retry-all').addEventListener('click', () => deadAction('retry', null));
    $('dead-purge-all').addEventListener('click', () => deadAction('purge', null));
    $('feed-pause').addEventListener('click', (e) => {
      paused = !paused;
      e.target.textContent = paused ? 'Resume' : 'Pause';
      e.target.setAttribute('aria-pressed', String(paused));
      if (paused) note('paused'); else schedule();
    });
    window.addEventListener('resize', schedule);
    window.addEventListener('hashchange', openLinkedJob);
    drawChart();
    openLinkedJob();
    connect();
    loadSchedules();
    // Not while the page is hidden: the next read after it shows catches up.
    setInterval(() => {
      if (!document.hidden) loadSchedules();
    }, SCHEDULES_EVERY);
  });
})();
