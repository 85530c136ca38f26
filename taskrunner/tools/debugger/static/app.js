// taskrunner debugger page.
//
// Data flow: GET api/sessions lists sessions; for the selected one,
// GET api/sessions/{id}/records gives the kept records plus the task table,
// then an EventSource on api/sessions/{id}/stream?after=SEQ delivers new
// records.  A "missed" event means this page fell behind and the server
// dropped records for it: the page reloads them with ?after=<last seq seen>.
//
// Safety: every piece of record data reaches the DOM through textContent,
// createTextNode or setAttribute -- never innerHTML -- so event text such as
// "<script>" is shown, not run.
'use strict';

(() => {
  const TOKEN = metaContent('taskrunner-token');
  const READ_ONLY = metaContent('taskrunner-read-only') === '1';
  const TERMINAL = {
    TaskFinished: 'finished', TaskFailed: 'failed',
    TaskCancelled: 'cancelled', TaskTimedOut: 'timed_out',
  };
  const TASK_TYPES = new Set(['TaskStarted', 'TaskOutput', 'TaskStuck', ...Object.keys(TERMINAL)]);
  const STATE_LABEL = {
    running: 'running', finished: 'finished', failed: 'failed',
    cancelled: 'cancelled', timed_out: 'timed out',
  };
  const MAX_EVENT_ROWS = 20000; // keep the DOM responsive on very long sessions
  const SESSION_POLL_MS = 2000;
  const TICK_MS = 500;
  const MIN_RENDER_MS = 100;

  const $ = (id) => document.getElementById(id);
  const dom = {
    mode: $('mode'), conn: $('conn'), sessions: $('sessions'), noSessions: $('no-sessions'),
    title: $('session-title'), meta: $('session-meta'), interrupt: $('interrupt'),
    notice: $('notice'), tasksBody: document.querySelector('#tasks tbody'),
    tasksTable: $('tasks'), noTasks: $('no-tasks'), timeline: $('timeline'),
    events: $('events'), follow: $('follow'),
  };

  let sessionList = [];
  let sessionListText = '';
  let view = null; // state of the selected session, replaced on selection
  let clockOffset = null; // server trio clock minus performance.now(), seconds
  let renderQueued = false;
  let lastRender = 0;
  let noticeTimer = null;

  // ---- small helpers -------------------------------------------------------

  function metaContent(name) {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute('content') : '';
  }

  // Build an element; children are nodes or strings (strings become text nodes).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.className = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  function svg(tag, attrs) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  function text(value) {
    if (value === null || value === undefined) return '';
    if (typeof value === 'string') return value;
    try { return JSON.stringify(value); } catch (e) { return String(value); }
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return '\u2014';
    if (seconds < 0) seconds = 0;
    if (seconds < 10) return `${seconds.toFixed(2)}s`;
    if (seconds < 60) return `${seconds.toFixed(1)}s`;
    const minutes = Math.floor(seconds / 60);
    return `${minutes}m ${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  }

  function fmtRelative(at) {
    if (!view || typeof at !== 'number' || view.t0 === null) return '';
    return `+${(at - view.t0).toFixed(3)}s`;
  }

  function taskKey(record) {
    return record.task_id !== null && record.task_id !== undefined
      ? `id:${record.task_id}` : `name:${record.task}`;
  }

  function rowKey(row) {
    return row.task_id !== null && row.task_id !== undefined
      ? `id:${row.task_id}` : `name:${row.name}`;
  }

  function trioNow() {
    return clockOffset === null ? null : performance.now() / 1000 + clockOffset;
  }

  function updateClock(now) {
    if (typeof now === 'number') clockOffset = now - performance.now() / 1000;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function postAction(url) {
    const response = await fetch(url, { method: 'POST', headers: { 'X-Taskrunner-Token': TOKEN } });
    let body = {};
    try { body = await response.json(); } catch (e) { /* non-JSON error page */ }
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  function showNotice(message, kind) {
    dom.notice.textContent = message;
    dom.notice.className = `notice ${kind || ''}`;
    dom.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { dom.notice.hidden = true; }, 5000);
  }

  function setConn(state) {
    dom.conn.hidden = false;
    dom.conn.className = `conn ${state}`;
    dom.conn.textContent = { live: 'live', reconnecting: 'reconnecting\u2026', ended: 'session ended' }[state] || state;
  }

  // ---- session state -------------------------------------------------------

  function newView(id) {
    return {
      id,
      info: null,
      tasks: new Map(), // key -> row, like Hub.tasks()
      tableSeq: -Infinity, // the task table already includes records up to this seq
      lastSeq: -Infinity, // last record shown
      t0: null, // session start on the trio clock
      lastAt: null,
      source: null, // EventSource
      resyncing: false,
      queue: [], // records that arrived while resyncing
      pendingCancel: new Set(),
      rows: 0,
      scrollPending: false,
    };
  }

  function canAct() {
    return !READ_ONLY && view && view.info && view.info.live && !view.info.ended;
  }

  // Same rules as Hub's task table (taskrunner/tools/hub.py, _Session.apply).
  function applyToTable(record) {
    const kind = record.type;
    if (kind === 'SessionStarted') {
      view.info.started_at = record.at;
      view.info.agent_id = record.agent_id;
      view.info.environment = record.environment;
    } else if (kind === 'SessionEnded') {
      view.info.ended = true;
      view.info.ended_at = record.at;
    }
    if (!TASK_TYPES.has(kind)) return;
    const key = taskKey(record);
    let row = view.tasks.get(key);
    if (!row) {
      row = {
        task_id: record.task_id, name: String(record.task), state: 'running',
        interruptible: null, timeout: null, flavor: null, started_at: null, ended_at: null,
        events: 0, detail: null, stuck: null,
      };
      view.tasks.set(key, row);
    }
    if (kind === 'TaskStarted') {
      Object.assign(row, {
        state: 'running', interruptible: record.interruptible, timeout: record.timeout,
        flavor: record.flavor, started_at: record.at,
      });
    } else if (kind === 'TaskOutput') {
      row.events += 1;
    } else if (kind === 'TaskStuck') {
      row.stuck = String(record.reason);
    } else if (TERMINAL[kind]) {
      row.state = TERMINAL[kind];
      row.ended_at = record.at;
      row.stuck = null;
      view.pendingCancel.delete(key);
      if (kind === 'TaskFailed') {
        const error = record.error || {};
        row.detail = `${error.type || 'Error'}: ${error.message || ''}`;
      } else if (kind === 'TaskCancelled') row.detail = String(record.reason);
      else if (kind === 'TaskTimedOut') row.detail = `timed out after ${record.timeout}s`;
      else row.detail = record.result === null || record.result === undefined ? null : text(record.result);
    }
    if (row.started_at === null && typeof record.at === 'number') row.started_at = record.at;
  }

  function addRecord(record) {
    if (typeof record.seq === 'number') {
      if (record.seq <= view.lastSeq) return; // already shown (history/stream overlap)
      view.lastSeq = record.seq;
    }
    if (typeof record.at === 'number') {
      view.lastAt = record.at;
      if (view.t0 === null) {
        view.t0 = view.info && typeof view.info.started_at === 'number' ? view.info.started_at : record.at;
      }
    }
    if (!(typeof record.seq === 'number' && record.seq <= view.tableSeq)) {
      view.info.published += 1; // records newer than the loaded summary
      applyToTable(record);
    }
    appendEventRow(record);
    queueRender();
  }

  // ---- loading and streaming -----------------------------------------------

  async function loadRecords(target, after) {
    const query = after !== null && isFinite(after) ? `?after=${after}` : '';
    const data = await getJSON(`api/sessions/${encodeURIComponent(target.id)}/records${query}`);
    if (target !== view) return; // the person picked another session meanwhile
    updateClock(data.now);
    view.info = data.session;
    if (view.t0 === null && typeof data.session.started_at === 'number') view.t0 = data.session.started_at;
    view.tasks = new Map(data.tasks.map((row) => [rowKey(row), row]));
    view.tableSeq = typeof data.session.last_seq === 'number' ? data.session.last_seq : -Infinity;
    if (after === null && data.session.dropped > 0) {
      dom.events.appendChild(h('li', { class: 'ev gap' },
        `${data.session.dropped} earlier records are no longer kept by the server.`));
    }
    const first = data.records[0];
    if (after !== null && isFinite(after) && first && typeof first.seq === 'number' && first.seq > after + 1) {
      // Seqs of a session go up by one: the server no longer keeps the ones between.
      dom.events.appendChild(h('li', { class: 'ev gap' },
        `${first.seq - after - 1} records were missed and are no longer kept by the server.`));
    }
    for (const record of data.records) addRecord(record);
    renderHeader();
    queueRender();
  }

  function openStream(target) {
    const after = isFinite(target.lastSeq) ? target.lastSeq : '';
    const source = new EventSource(`api/sessions/${encodeURIComponent(target.id)}/stream?after=${after}`);
    target.source = source;
    source.addEventListener('open', () => { if (target === view) setConn(view.info.ended ? 'ended' : 'live'); });
    source.addEventListener('error', () => { if (target === view) setConn('reconnecting'); });
    source.addEventListener('record', (event) => {
      if (target !== view) return;
      const record = JSON.parse(event.data);
      if (target.resyncing) target.queue.push(record);
      else addRecord(record);
    });
    source.addEventListener('missed', () => { if (target === view) resync(target); });
  }

  // The server dropped records for this page: reload everything after the last
  // one seen.  Stream records arriving meanwhile wait in a queue so that they
  // are not shown before the reloaded ones.
  async function resync(target) {
    if (target.resyncing) return;
    target.resyncing = true;
    try {
      await loadRecords(target, target.lastSeq);
    } catch (error) {
      showNotice(`Could not reload missed records: ${error.message}`, 'error');
    } finally {
      target.resyncing = false;
      const queued = target.queue;
      target.queue = [];
      if (target === view) for (const record of queued) addRecord(record);
    }
  }

  async function selectSession(id) {
    if (view && view.id === id) return;
    if (view && view.source) view.source.close();
    const target = newView(id);
    view = target;
    history.replaceState(null, '', `#session=${encodeURIComponent(id)}`);
    dom.events.replaceChildren();
    dom.tasksBody.replaceChildren();
    renderSessions();
    try {
      await loadRecords(target, null);
    } catch (error) {
      showNotice(`Could not load session: ${error.message}`, 'error');
      if (view === target) view = null; // the next poll of the session list retries
      return;
    }
    // Unless the person picked another session (or this one again) meanwhile.
    if (!READ_ONLY && view === target) openStream(target);
  }

  async function refreshSessions() {
    let data;
    try {
      data = await getJSON('api/sessions');
    } catch (error) {
      if (!READ_ONLY) setConn('reconnecting');
      return;
    }
    updateClock(data.now);
    const listText = JSON.stringify(data.sessions);
    if (listText !== sessionListText) {
      sessionListText = listText;
      sessionList = data.sessions;
      renderSessions();
    }
    if (view && view.info) {
      const fresh = sessionList.find((s) => s.session_id === view.id);
      if (fresh && fresh.live !== view.info.live) {
        view.info.live = fresh.live;
        renderHeader();
        queueRender();
      }
    }
    if (!view && sessionList.length) {
      const wanted = decodeURIComponent((location.hash.match(/session=([^&]*)/) || [])[1] || '');
      const pick = sessionList.find((s) => s.session_id === wanted)
        || [...sessionList].reverse().find((s) => s.live)
        || sessionList[sessionList.length - 1];
      selectSession(pick.session_id);
    }
  }

  // ---- rendering -----------------------------------------------------------

  function renderSessions() {
    dom.noSessions.hidden = sessionList.length > 0;
    dom.sessions.replaceChildren(...sessionList.map((s) => {
      const status = s.ended ? 'ended' : (s.live ? 'live' : 'open');
      const item = h('li', { class: view && view.id === s.session_id ? 'selected' : '' },
        h('button', { type: 'button', class: 'session-link', title: s.session_id },
          h('span', { class: 'mono sid' }, s.session_id),
          h('span', { class: `dot ${status}`, title: status }),
          h('span', { class: 'muted small' },
            `${text(s.agent_id) || 'agent \u2014'} \u00b7 ${s.tasks} tasks \u00b7 ${s.published} records`)));
      item.firstChild.addEventListener('click', () => selectSession(s.session_id));
      return item;
    }));
  }

  function sessionEnd() {
    if (!view || !view.info) return null;
    if (typeof view.info.ended_at === 'number') return view.info.ended_at;
    if (!READ_ONLY && view.info.live) {
      const now = trioNow();
      if (now !== null) return now;
    }
    return view.lastAt;
  }

  function renderHeader() {
    if (!view || !view.info) return;
    const info = view.info;
    dom.title.textContent = info.session_id;
    const parts = [
      `agent ${text(info.agent_id) || '\u2014'}`,
      `environment ${text(info.environment) || '\u2014'}`,
      `${info.published} records`,
      info.ended ? `ended after ${fmtDuration(info.ended_at - info.started_at)}` : (info.live ? 'running' : 'not controllable'),
    ];
    dom.meta.textContent = parts.join(' \u00b7 ');
    dom.interrupt.hidden = !canAct();
    if (!READ_ONLY && info.ended && view.source) setConn('ended');
  }

  // Table and timeline are rebuilt whole; a busy session publishes far more
  // often than a person can read, so rebuild at most every MIN_RENDER_MS.
  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    const wait = Math.max(0, lastRender + MIN_RENDER_MS - performance.now());
    setTimeout(() => requestAnimationFrame(render), wait);
  }

  function render() {
    renderQueued = false;
    lastRender = performance.now();
    if (!view || !view.info) return;
    renderHeader();
    renderTasks();
    renderTimeline();
    syncSidebarEntry();
    if (view.scrollPending && dom.follow.checked) {
      // Scroll only the event list, not the page, so the table stays in view.
      dom.events.scrollTop = dom.events.scrollHeight;
    }
    view.scrollPending = false;
  }

  // Keep the selected session's sidebar line as current as the view, between polls.
  function syncSidebarEntry() {
    const entry = sessionList.find((s) => s.session_id === view.id);
    if (!entry) return;
    const fresh = { published: view.info.published, tasks: view.tasks.size, ended: view.info.ended };
    if (Object.entries(fresh).some(([key, value]) => entry[key] !== value)) {
      Object.assign(entry, fresh);
      renderSessions();
    }
  }

  function rowElapsed(row) {
    if (typeof row.started_at !== 'number') return null;
    const end = typeof row.ended_at === 'number' ? row.ended_at : sessionEnd();
    return end === null ? null : end - row.started_at;
  }

  function renderTasks() {
    const rows = [...view.tasks.values()];
    dom.noTasks.hidden = rows.length > 0;
    dom.tasksTable.hidden = rows.length === 0;
    const actions = canAct();
    dom.tasksBody.replaceChildren(...rows.map((row) => {
      const key = rowKey(row);
      const stateCell = h('td', {},
        h('span', { class: `pill st-${row.state}`, title: row.detail || '' }, STATE_LABEL[row.state] || row.state),
        row.stuck ? h('span', { class: 'pill stuck', title: row.stuck }, 'stuck') : null);
      let actionCell = h('td', { class: 'action' });
      if (actions && row.state === 'running') {
        const pending = view.pendingCancel.has(key);
        const button = h('button', {
          type: 'button', class: 'btn small', 'data-task': row.name, disabled: pending,
        }, pending ? 'Cancelling\u2026' : 'Cancel');
        button.addEventListener('click', () => cancelTask(row.name, key));
        actionCell = h('td', { class: 'action' }, button);
      }
      return h('tr', { 'data-task': row.name, 'data-state': row.state },
        h('td', {},
          h('span', { class: 'task-name' }, row.name),
          row.detail && row.state !== 'running' ? h('div', { class: 'detail muted small' }, row.detail) : null),
        stateCell,
        h('td', {}, row.interruptible === null ? '\u2014' : (row.interruptible ? 'yes' : 'no')),
        h('td', {}, typeof row.timeout === 'number' ? fmtDuration(row.timeout) : '\u2014'),
        h('td', { class: 'num elapsed' }, fmtDuration(rowElapsed(row))),
        h('td', { class: 'num' }, String(row.events)),
        actionCell);
    }));
  }

  function fmtTick(seconds, step) {
    if (step >= 60) return `${Math.floor(seconds / 60)}m${seconds % 60 ? ` ${Math.round(seconds % 60)}s` : ''}`;
    const decimals = step >= 1 ? 0 : (step >= 0.1 ? 1 : 2);
    return `${seconds.toFixed(decimals)}s`;
  }

  function niceStep(span) {
    const steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
    for (const step of steps) if (span / step <= 8) return step;
    return Math.ceil(span / 8 / 3600) * 3600;
  }

  function renderTimeline() {
    const rows = [...view.tasks.values()].filter((row) => typeof row.started_at === 'number');
    if (!rows.length) {
      dom.timeline.replaceChildren(h('p', { class: 'muted' }, 'No tasks yet.'));
      return;
    }
    const t0 = view.t0 !== null ? view.t0 : Math.min(...rows.map((r) => r.started_at));
    let t1 = sessionEnd();
    for (const row of rows) if (typeof row.ended_at === 'number') t1 = Math.max(t1 || 0, row.ended_at);
    if (t1 === null || t1 - t0 < 0.001) t1 = t0 + 0.001;
    const width = Math.max(dom.timeline.clientWidth || 600, 400);
    const labelWidth = 170;
    const rowHeight = 24;
    const top = 22;
    const plot = width - labelWidth - 16;
    const height = top + rows.length * rowHeight + 6;
    const x = (t) => labelWidth + ((t - t0) / (t1 - t0)) * plot;
    const root = svg('svg', {
      width, height, viewBox: `0 0 ${width} ${height}`, class: 'timeline-svg', role: 'img',
    });
    const title = svg('title');
    title.textContent = 'Task lifetimes';
    root.appendChild(title);
    const step = niceStep(t1 - t0);
    for (let t = 0; t <= t1 - t0 + 1e-9; t += step) {
      const xPos = x(t0 + t);
      root.appendChild(svg('line', { x1: xPos, x2: xPos, y1: top - 4, y2: height, class: 'grid' }));
      const label = svg('text', { x: xPos, y: top - 8, class: 'tick', 'text-anchor': 'middle' });
      label.textContent = fmtTick(t, step);
      root.appendChild(label);
    }
    rows.forEach((row, index) => {
      const y = top + index * rowHeight;
      const name = svg('text', { x: labelWidth - 10, y: y + rowHeight / 2 + 4, class: 'label', 'text-anchor': 'end' });
      name.textContent = row.name.length > 22 ? `${row.name.slice(0, 21)}\u2026` : row.name;
      root.appendChild(name);
      const end = typeof row.ended_at === 'number' ? row.ended_at : t1;
      const x0 = x(row.started_at);
      const bar = svg('rect', {
        x: x0, y: y + 5, width: Math.max(x(end) - x0, 3), height: rowHeight - 10, rx: 3,
        class: `bar st-${row.state}`, 'data-task': row.name,
      });
      const tip = svg('title');
      tip.textContent = `${row.name}: ${STATE_LABEL[row.state] || row.state}, ${fmtDuration(rowElapsed(row))}`;
      bar.appendChild(tip);
      root.appendChild(bar);
    });
    dom.timeline.replaceChildren(root);
  }

  // One line of the event stream.  Task records get the orange "task" style
  // and the task's name; failures show their message and a <details> with the
  // traceback.
  function appendEventRow(record) {
    const source = record.source || 'session';
    const kind = record.type || '?';
    const classes = ['ev', `src-${source}`, `type-${kind}`];
    if (kind === 'HandlerFailed' || kind === 'TaskFailed') classes.push('failed');
    const who = source === 'task'
      ? h('span', { class: 'who task-tag', title: String(record.task) }, String(record.task))
      : h('span', { class: 'who' }, source);
    const body = h('div', { class: 'body' });
    describe(record, body);
    const row = h('li', { class: classes.join(' '), 'data-seq': record.seq, 'data-type': kind },
      h('span', { class: 'time mono' }, fmtRelative(record.at)), who, body);
    dom.events.appendChild(row);
    view.rows += 1;
    if (view.rows > MAX_EVENT_ROWS) {
      const first = dom.events.querySelector('li.ev:not(.gap)');
      if (first) first.remove();
    }
    // Scrolling forces a layout: do it once per frame (in render), not per record.
    view.scrollPending = true;
  }

  function eventText(event) {
    if (!event || typeof event !== 'object') return text(event);
    for (const field of ['text', 'message', 'content']) {
      if (typeof event[field] === 'string') return event[field];
    }
    const rest = { ...event };
    delete rest.type;
    return Object.keys(rest).length ? text(rest) : '';
  }

  function eventLine(event) {
    const type = event && typeof event === 'object' && event.type ? String(event.type) : 'event';
    return [h('span', { class: 'etype' }, type), h('span', { class: 'etext' }, eventText(event))];
  }

  function failure(error, into) {
    const err = error || {};
    into.appendChild(h('div', { class: 'error-line' },
      h('strong', {}, `${err.type || 'Error'}: `), String(err.message || '')));
    if (err.traceback) {
      into.appendChild(h('details', {}, h('summary', {}, 'traceback'),
        h('pre', { class: 'traceback' }, String(err.traceback))));
    }
  }

  function inputLine(input, into) {
    if (!input) return;
    into.appendChild(h('div', { class: 'input muted small' },
      `in reply to ${input.type || 'input'}: ${eventText(input)}`));
  }

  function describe(record, into) {
    switch (record.type) {
      case 'SessionStarted':
        into.append(h('span', { class: 'etype' }, 'session started'),
          `agent ${text(record.agent_id)} \u00b7 environment ${text(record.environment)}`);
        break;
      case 'SessionEnded':
        into.append(h('span', { class: 'etype' }, 'session ended'));
        break;
      case 'HandlerOutput':
        into.append(...eventLine(record.event));
        inputLine(record.input, into);
        break;
      case 'HandlerFailed':
        into.append(h('span', { class: 'etype' }, 'handler failed'));
        failure(record.error, into);
        inputLine(record.input, into);
        break;
      case 'TaskStarted': {
        const bits = [record.interruptible ? 'interruptible' : 'not interruptible'];
        if (typeof record.timeout === 'number') bits.push(`timeout ${fmtDuration(record.timeout)}`);
        if (record.flavor) bits.push(record.flavor);
        into.append(h('span', { class: 'etype' }, 'started'), bits.join(' \u00b7 '));
        break;
      }
      case 'TaskOutput':
        into.append(...eventLine(record.event));
        break;
      case 'TaskFinished':
        into.append(h('span', { class: 'etype' }, 'finished'),
          record.result === null || record.result === undefined ? '' : `\u2192 ${text(record.result)}`);
        break;
      case 'TaskFailed':
        into.append(h('span', { class: 'etype' }, 'failed'));
        failure(record.error, into);
        break;
      case 'TaskCancelled':
        into.append(h('span', { class: 'etype' }, 'cancelled'), text(record.reason));
        break;
      case 'TaskTimedOut':
        into.append(h('span', { class: 'etype' }, 'timed out'), `after ${fmtDuration(record.timeout)}`);
        break;
      case 'TaskStuck':
        into.append(h('span', { class: 'etype' }, 'stuck'),
          `${text(record.reason)} (since ${fmtRelative(record.since)})`);
        break;
      default: {
        const rest = { ...record };
        for (const key of ['type', 'seq', 'at', 'source', 'task', 'task_id']) delete rest[key];
        into.append(h('span', { class: 'etype' }, String(record.type)), text(rest));
      }
    }
  }

  // ---- actions -------------------------------------------------------------

  async function cancelTask(name, key) {
    const target = view;
    target.pendingCancel.add(key);
    queueRender();
    try {
      const result = await postAction(
        `api/sessions/${encodeURIComponent(target.id)}/tasks/${encodeURIComponent(name)}/cancel`);
      if (!result.cancelled) {
        target.pendingCancel.delete(key);
        showNotice(`Task ${name} was not running.`, 'warn');
      }
    } catch (error) {
      target.pendingCancel.delete(key);
      showNotice(`Cancel failed: ${error.message}`, 'error');
    }
    queueRender();
  }

  dom.interrupt.addEventListener('click', async () => {
    if (!view) return;
    dom.interrupt.disabled = true;
    try {
      const result = await postAction(`api/sessions/${encodeURIComponent(view.id)}/interrupt`);
      showNotice(`Interrupted: ${result.cancelled} task(s) cancelled.`, 'ok');
    } catch (error) {
      showNotice(`Interrupt failed: ${error.message}`, 'error');
    } finally {
      dom.interrupt.disabled = false;
    }
  });

  // ---- start ---------------------------------------------------------------

  dom.mode.textContent = READ_ONLY ? 'recording \u00b7 read-only' : 'live';
  dom.mode.classList.add(READ_ONLY ? 'readonly' : 'live');
  window.addEventListener('resize', queueRender);
  refreshSessions();
  if (!READ_ONLY) {
    setInterval(refreshSessions, SESSION_POLL_MS);
    // Running tasks' elapsed times and bars grow while nothing is published.
    setInterval(() => {
      if (view && view.info && !view.info.ended && [...view.tasks.values()].some((r) => r.state === 'running')) {
        queueRender();
      }
    }, TICK_MS);
  }
})();
