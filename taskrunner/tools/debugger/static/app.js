// taskrunner debugger page.
//
// Data flow: GET api/sessions lists sessions; for the selected live session,
// GET api/sessions/{id}/records gives the kept records and the task table, then
// api/sessions/{id}/stream (server-sent events read with fetch, so that the request
// carries the Authorization header) delivers new ones.  A recording is paged instead:
// api/sessions/{id}/page?start=&count=&task=&kinds= gives the rows in view.
//
// Rendering is incremental: records are applied to the model as they come; the DOM is
// touched once per animation frame, and only for the rows in view (vlist.js).
//
// Safety: record data reaches the DOM only through textContent, createTextNode or
// setAttribute -- never innerHTML -- so event text such as "<script>" is shown, not run.
'use strict';

(() => {
  const READ_ONLY = metaContent('taskrunner-read-only') === '1';
  const TERMINAL = {
    TaskFinished: 'finished', TaskFailed: 'failed',
    TaskCancelled: 'cancelled', TaskTimedOut: 'timed_out',
  };
  const TASK_TYPES = new Set(['TaskQueued', 'TaskStarted', 'TaskOutput', 'TaskStuck', ...Object.keys(TERMINAL)]);
  const STATE_LABEL = {
    pending: 'pending', running: 'running', finished: 'finished', failed: 'failed',
    cancelled: 'cancelled', timed_out: 'timed out', stuck: 'stuck',
  };
  const REASONS = ['interrupted', 'cancel_task', 'cancel_all', 'closed', 'replaced', 'debugger'];
  const MAX_LOCAL_RECORDS = 100000;
  const PAGE = 200;
  const ROW = 24;
  const SESSION_POLL_MS = 2000;
  const STATUS_POLL_MS = 1000;
  const TICK_MS = 500;
  const MIN_FRAME_MS = 100;
  const SIDEBAR_MS = 1000;

  const $ = (id) => document.getElementById(id);
  const dom = {
    mode: $('mode'), conn: $('conn'), sessions: $('sessions'), noSessions: $('no-sessions'),
    title: $('session-title'), meta: $('session-meta'), interrupt: $('interrupt'),
    download: $('download'), notice: $('notice'), stateFilters: $('state-filters'),
    search: $('task-search'), taskCount: $('task-count'), noTasks: $('no-tasks'),
    axis: $('timeline-axis'), legend: $('legend'), kindFilters: $('kind-filters'),
    eventCount: $('event-count'), follow: $('follow'), agent: $('agent-status'),
    recording: $('recording-status'), tokenForm: $('token-form'), tokenInput: $('token-input'),
    tv: $('task-view'), tvName: $('tv-name'), tvFacts: $('tv-facts'), tvCreated: $('tv-created'),
    tvStack: $('tv-stack'), tvCount: $('tv-count'), raw: $('raw-record'),
  };

  let token = metaContent('taskrunner-token') || tokenFromHash() || sessionStorage.getItem('taskrunner-token') || '';
  let sessionList = [];
  let sessionListText = '';
  let view = null;
  let clockOffset = null;
  let frameQueued = false;
  let noticeTimer = null;
  let recordingWasLoading = true;

  // ---- helpers --------------------------------------------------------------

  function metaContent(name) {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute('content') : '';
  }

  function tokenFromHash() {
    const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
    if (!match) return '';
    const value = decodeURIComponent(match[1]);
    sessionStorage.setItem('taskrunner-token', value);
    history.replaceState(null, '', location.pathname); // keep it out of the address bar
    return value;
  }

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
    return row.key || (row.task_id !== null && row.task_id !== undefined ? `id:${row.task_id}` : `name:${row.name}`);
  }

  function trioNow() {
    return clockOffset === null ? null : performance.now() / 1000 + clockOffset;
  }

  function updateClock(now) {
    if (typeof now === 'number') clockOffset = now - performance.now() / 1000;
  }

  function authHeaders(extra) {
    return { Authorization: `Bearer ${token}`, ...(extra || {}) };
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: authHeaders({ Accept: 'application/json' }) });
    if (response.status === 401) { askToken(); throw new Error('the token is missing or wrong'); }
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function postAction(url) {
    const response = await fetch(url, { method: 'POST', headers: authHeaders() });
    let body = {};
    try { body = await response.json(); } catch (e) { /* non-JSON error page */ }
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  function askToken() {
    dom.tokenForm.hidden = false;
  }

  function showNotice(message, kind) {
    dom.notice.textContent = message;
    dom.notice.className = `notice ${kind || ''}`;
    dom.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { dom.notice.hidden = true; }, 6000);
  }

  function setConn(state) {
    dom.conn.hidden = false;
    dom.conn.className = `conn ${state}`;
    dom.conn.textContent = { live: 'live', reconnecting: 'reconnecting\u2026', ended: 'session ended' }[state] || state;
  }

  function sessionPath(id, tail) {
    return `api/sessions/${encodeURIComponent(id)}/${tail}`;
  }

  // ---- the model ----------------------------------------------------------------

  function newView(id) {
    return {
      id,
      info: null,
      tasks: new Map(), // key -> row, like Hub.tasks()
      order: [], // keys in start order
      tableSeq: -Infinity,
      lastSeq: -Infinity,
      t0: null,
      lastAt: null,
      abort: null, // AbortController of the stream
      resyncing: false,
      queue: [],
      pendingCancel: new Set(),
      records: [], // live: the records received (up to MAX_LOCAL_RECORDS)
      droppedLocal: 0,
      kinds: new Map(), // kind -> count
      inputs: [], // InputReceived records, for the timeline markers
      stateFilter: 'all',
      search: '',
      kindFilter: null, // null: all kinds, else a Set
      filteredTasks: [], // keys
      tasksDirty: true,
      eventsDirty: true,
      eventIndex: null, // live with a kind filter: indexes into records
      remote: { total: 0, pages: new Map(), loading: new Set(), filterKey: '' }, // recordings
      selected: null, // task key in the task view
      tv: null, // task view data
    };
  }

  function canAct() {
    return !READ_ONLY && view && view.info && view.info.live && !view.info.ended;
  }

  function stateOf(row) {
    if (row.state === 'running' && row.stuck) return 'stuck';
    return row.state;
  }

  // The filter group a task row counts in: its state, or cancelled:<reason>.
  function groupOf(row) {
    const state = stateOf(row);
    if (state === 'cancelled') return `cancelled:${reasonOf(row)}`;
    return state;
  }

  // A cancel from this page has its own colour and filter, whatever its reason.
  function reasonOf(row) {
    return row.origin === 'debugger' ? 'debugger' : (row.reason || 'cancel_task');
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
        key, task_id: record.task_id, name: String(record.task), state: 'running',
        interruptible: null, timeout: null, flavor: null, started_at: null, ended_at: null,
        events: 0, detail: null, stuck: null, reason: null, origin: null, created: null,
      };
      view.tasks.set(key, row);
      view.order.push(key);
    }
    if (kind === 'TaskQueued') {
      Object.assign(row, {
        state: 'pending', interruptible: record.interruptible, timeout: record.timeout,
        flavor: record.flavor, started_at: record.at, created: record.created || null,
      });
    } else if (kind === 'TaskStarted') {
      Object.assign(row, {
        state: 'running', interruptible: record.interruptible, timeout: record.timeout,
        flavor: record.flavor, started_at: record.at, created: record.created || row.created || null,
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
      } else if (kind === 'TaskCancelled') {
        row.reason = String(record.reason);
        row.origin = record.origin === null || record.origin === undefined ? null : String(record.origin);
        row.detail = row.origin ? `${row.reason} by ${row.origin}` : row.reason;
      } else if (kind === 'TaskTimedOut') row.detail = `timed out after ${record.timeout}s`;
      else row.detail = record.result === null || record.result === undefined ? null : text(record.result);
    }
    if (row.started_at === null && typeof record.at === 'number') row.started_at = record.at;
    view.tasksDirty = true;
  }

  function addRecord(record) {
    if (typeof record.seq === 'number') {
      if (record.seq <= view.lastSeq) return;
      view.lastSeq = record.seq;
    }
    if (typeof record.at === 'number') {
      view.lastAt = record.at;
      if (view.t0 === null) view.t0 = typeof view.info.started_at === 'number' ? view.info.started_at : record.at;
    }
    if (!(typeof record.seq === 'number' && record.seq <= view.tableSeq)) {
      view.info.published += 1;
      applyToTable(record);
      view.kinds.set(record.type, (view.kinds.get(record.type) || 0) + 1);
    }
    if (record.type === 'InputReceived') view.inputs.push(record);
    view.records.push(record);
    if (view.records.length > MAX_LOCAL_RECORDS) {
      const drop = view.records.length - MAX_LOCAL_RECORDS;
      view.records.splice(0, drop);
      view.droppedLocal += drop;
      view.eventIndex = null;
    } else if (view.eventIndex && (!view.kindFilter || view.kindFilter.has(record.type))) {
      view.eventIndex.push(view.records.length - 1);
    }
    if (view.tv && view.tv.key === taskKey(record) && record.task !== null && record.task !== undefined) {
      view.tv.records.push(record);
    }
    view.eventsDirty = true;
    queueFrame();
  }

  // ---- loading and streaming -------------------------------------------------------

  async function loadRecords(target, after) {
    const query = after !== null && isFinite(after) ? `?after=${after}` : '';
    const data = await getJSON(sessionPath(target.id, `records${query}`));
    if (target !== view) return;
    updateClock(data.now);
    view.info = data.session;
    if (view.t0 === null && typeof data.session.started_at === 'number') view.t0 = data.session.started_at;
    view.tasks = new Map(data.tasks.map((row) => [rowKey(row), row]));
    view.order = [...view.tasks.keys()];
    view.kinds = new Map(Object.entries(data.session.kinds || {}));
    view.tableSeq = typeof data.session.last_seq === 'number' ? data.session.last_seq : -Infinity;
    if (after === null && data.session.dropped > 0) {
      showNotice(`${data.session.dropped} earlier records are no longer kept by the server (download keeps what is).`, 'warn');
    }
    view.tasksDirty = true;
    if (READ_ONLY) {
      view.remote = { total: data.session.kept, pages: new Map(), loading: new Set(), filterKey: '' };
      view.eventsDirty = true;
    } else {
      for (const record of data.records) addRecord(record);
    }
    queueFrame();
  }

  // Server-sent events over fetch (EventSource cannot send the Authorization header).
  async function openStream(target) {
    let backoff = 1000;
    while (target === view) {
      const controller = new AbortController();
      target.abort = controller;
      const after = isFinite(target.lastSeq) ? target.lastSeq : '';
      try {
        const response = await fetch(sessionPath(target.id, `stream?after=${after}`),
          { headers: authHeaders({ Accept: 'text/event-stream' }), signal: controller.signal });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        if (target === view) setConn(view.info.ended ? 'ended' : 'live');
        backoff = 1000;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const began = performance.now();
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            handleEvent(target, block);
          }
          noteCost('chunk', performance.now() - began);
        }
        if (target.info && target.info.ended) { setConn('ended'); return; }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      if (target !== view) return;
      setConn('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  function handleEvent(target, block) {
    let kind = 'message';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) kind = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    if (target !== view || !data) return;
    if (kind === 'record') {
      const record = JSON.parse(data);
      if (target.resyncing) target.queue.push(record);
      else addRecord(record);
    } else if (kind === 'missed') {
      resync(target);
    }
  }

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
    if (view && view.abort) view.abort.abort();
    const target = newView(id);
    view = target;
    closeTaskView();
    history.replaceState(null, '', `#session=${encodeURIComponent(id)}`);
    renderSessions();
    try {
      await loadRecords(target, null);
    } catch (error) {
      showNotice(`Could not load session: ${error.message}`, 'error');
      if (view === target) view = null;
      return;
    }
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
    const listText = JSON.stringify(data.sessions.map((s) => [s.session_id, s.live, s.ended, s.tasks, s.published]));
    if (listText !== sessionListText) {
      sessionListText = listText;
      sessionList = data.sessions;
      renderSessions();
    }
    if (view && view.info) {
      const fresh = sessionList.find((s) => s.session_id === view.id);
      if (fresh && fresh.live !== view.info.live) {
        view.info.live = fresh.live;
        queueFrame();
      }
      if (fresh && READ_ONLY && fresh.kept !== view.remote.total) {
        // A recording still being read: more records and tasks arrived.
        view.remote.total = fresh.kept;
        reloadRecordingSummary();
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

  async function reloadRecordingSummary() {
    const target = view;
    try {
      const data = await getJSON(sessionPath(target.id, 'tasks'));
      if (target !== view) return;
      target.tasks = new Map(data.tasks.map((row) => [rowKey(row), row]));
      target.order = [...target.tasks.keys()];
      const info = sessionList.find((s) => s.session_id === target.id);
      if (info) { target.info = { ...info }; target.kinds = new Map(Object.entries(info.kinds || {})); }
      target.remote.pages.clear();
      target.tasksDirty = true;
      target.eventsDirty = true;
      queueFrame();
    } catch (error) { /* next poll retries */ }
  }

  async function refreshStatus() {
    let data;
    try { data = await getJSON('api/status'); } catch (error) { return; }
    updateClock(data.now);
    const agent = data.agent;
    if (agent && agent.blocked) {
      const who = agent.owner || 'unknown code';
      dom.agent.textContent = `Agent thread blocked for ${fmtDuration(agent.blocked_for)} by ${who}` +
        (agent.stack && agent.stack.length ? ` at ${frameLine(agent.stack[agent.stack.length - 1])}: ${agent.stack[agent.stack.length - 1].code}` : '');
      dom.agent.className = 'agent-status blocked';
      dom.agent.hidden = false;
    } else if (agent && agent.last_block) {
      dom.agent.textContent = `last blocked ${fmtDuration(agent.last_block.duration)} (${agent.blocks} time${agent.blocks === 1 ? '' : 's'})`;
      dom.agent.className = 'agent-status';
      dom.agent.hidden = false;
    } else {
      dom.agent.hidden = true;
    }
    const rec = data.recording;
    if (rec) {
      const share = rec.total_bytes ? Math.floor((100 * rec.bytes_read) / rec.total_bytes) : 100;
      dom.recording.textContent = rec.loading
        ? `reading recording: ${rec.records.toLocaleString()} records (${share}%)`
        : `recording: ${rec.records.toLocaleString()} records${rec.error ? ` \u2014 stopped at a bad line: ${rec.error}` : ''}`;
      dom.recording.className = `recording-status${rec.error ? ' error' : ''}`;
      dom.recording.hidden = false;
      // While it is read, and once more when done: the sessions grow.
      if (rec.loading || recordingWasLoading) refreshSessions();
      recordingWasLoading = rec.loading;
    }
  }

  // ---- rendering -----------------------------------------------------------------

  // At most one frame every MIN_FRAME_MS: a busy session publishes far more often than a
  // person can read, and each frame costs a layout.
  let lastFrame = 0;
  function queueFrame() {
    if (frameQueued) return;
    frameQueued = true;
    const wait = Math.max(0, lastFrame + MIN_FRAME_MS - performance.now());
    setTimeout(() => requestAnimationFrame(renderFrame), wait);
  }

  function renderFrame() {
    frameQueued = false;
    lastFrame = performance.now();
    try { drawFrame(); } finally { noteCost('frame', performance.now() - lastFrame); }
  }

  // The slowest frames and stream chunks, for the page's own performance test.
  const costs = { frame: 0, chunk: 0 };
  function noteCost(kind, ms) { if (ms > costs[kind]) costs[kind] = ms; }

  function drawFrame() {
    if (!view || !view.info) return;
    // Reads first (scroll positions), then writes: one layout per frame.
    taskList.measure();
    timeline.measure();
    eventList.measure();
    if (view.tv) tvList.measure();
    renderHeader();
    if (view.tasksDirty) {
      view.tasksDirty = false;
      filterTasks();
      renderStateChips();
      taskList.setCount(view.filteredTasks.length);
      timeline.setCount(view.filteredTasks.length);
      renderLegend();
    }
    taskList.refresh();
    timeline.refresh();
    renderAxis();
    if (view.eventsDirty) {
      view.eventsDirty = false;
      renderKindChips();
      const before = eventList.count;
      eventList.setCount(eventCount());
      if (dom.follow.checked && eventList.count !== before) eventList.scrollToEnd();
      if (view.tv) tvList.setCount(view.tv.total !== undefined ? view.tv.total : view.tv.records.length);
    }
    eventList.refresh();
    if (view.tv) { renderTaskFacts(); tvList.refresh(); }
    syncSidebarEntry();
  }

  function renderSessions() {
    dom.noSessions.hidden = sessionList.length > 0;
    dom.sessions.replaceChildren(...sessionList.map((s) => {
      const status = s.ended ? 'ended' : (s.live ? 'live' : 'open');
      const item = h('li', { class: view && view.id === s.session_id ? 'selected' : '' },
        h('button', { type: 'button', class: 'session-link', title: s.session_id },
          h('span', { class: 'mono sid' }, s.session_id),
          h('span', { class: `dot ${status}`, title: status }),
          h('span', { class: 'muted small' },
            `${text(s.agent_id) || 'agent \u2014'} \u00b7 ${s.tasks} tasks \u00b7 ${s.published.toLocaleString()} records`)));
      item.firstChild.addEventListener('click', () => selectSession(s.session_id));
      return item;
    }));
  }

  let lastSidebar = 0;
  function syncSidebarEntry() {
    const entry = sessionList.find((s) => s.session_id === view.id);
    if (!entry || READ_ONLY || performance.now() - lastSidebar < SIDEBAR_MS) return;
    lastSidebar = performance.now();
    if (entry.published !== view.info.published || entry.tasks !== view.tasks.size || entry.ended !== view.info.ended) {
      Object.assign(entry, { published: view.info.published, tasks: view.tasks.size, ended: view.info.ended });
      renderSessions();
    }
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

  let headerText = '';
  function renderHeader() {
    const info = view.info;
    const parts = [
      `agent ${text(info.agent_id) || '\u2014'}`,
      `environment ${text(info.environment) || '\u2014'}`,
      READ_ONLY ? `${(info.kept || 0).toLocaleString()} records in the recording` : `${info.published.toLocaleString()} records`,
      info.ended ? `ended after ${fmtDuration(info.ended_at - info.started_at)}` : (info.live ? 'running' : 'not controllable'),
    ];
    if (view.droppedLocal) parts.push(`${view.droppedLocal.toLocaleString()} oldest not shown (download has what the server keeps)`);
    const line = parts.join(' \u00b7 ');
    if (line !== headerText || dom.title.textContent !== info.session_id) {
      headerText = line;
      dom.title.textContent = info.session_id;
      dom.meta.textContent = line;
    }
    dom.interrupt.hidden = !canAct();
    dom.download.hidden = false;
  }

  function filterTasks() {
    const counts = new Map();
    const out = [];
    const search = view.search.toLowerCase();
    const wanted = view.stateFilter;
    for (const key of view.order) {
      const row = view.tasks.get(key);
      if (!row) continue;
      if (search && !row.name.toLowerCase().includes(search)) continue;
      const group = groupOf(row);
      counts.set(group, (counts.get(group) || 0) + 1);
      if (group.startsWith('cancelled:')) counts.set('cancelled', (counts.get('cancelled') || 0) + 1);
      if (wanted === 'all' || wanted === group || (wanted === 'cancelled' && group.startsWith('cancelled:'))) out.push(key);
    }
    view.counts = counts;
    view.filteredTasks = out;
    dom.noTasks.hidden = view.tasks.size > 0;
    dom.taskCount.textContent = out.length === view.tasks.size ? `${out.length}` : `${out.length} of ${view.tasks.size}`;
  }

  function chip(container, id, label, count, active, onClick, cls) {
    let el = container.querySelector(`[data-filter="${CSS.escape(id)}"]`);
    if (!el) {
      el = h('button', { type: 'button', class: `chip ${cls || ''}`, 'data-filter': id },
        h('span', { class: 'chip-label' }, label), h('span', { class: 'chip-count' }, ''));
      el.addEventListener('click', onClick);
      container.appendChild(el);
    }
    el.querySelector('.chip-count').textContent = String(count);
    el.classList.toggle('active', active);
    el.disabled = count === 0 && !active;
    return el;
  }

  function renderStateChips() {
    const counts = view.counts || new Map();
    const total = view.order.length;
    const groups = [['all', 'all', total], ['pending', 'pending', counts.get('pending') || 0],
      ['running', 'running', counts.get('running') || 0],
      ['stuck', 'stuck', counts.get('stuck') || 0], ['finished', 'finished', counts.get('finished') || 0],
      ['failed', 'failed', counts.get('failed') || 0], ['timed_out', 'timed out', counts.get('timed_out') || 0],
      ['cancelled', 'cancelled', counts.get('cancelled') || 0]];
    const reasons = new Set(REASONS);
    for (const key of counts.keys()) if (key.startsWith('cancelled:')) reasons.add(key.slice(10));
    for (const reason of reasons) {
      const n = counts.get(`cancelled:${reason}`) || 0;
      if (n || view.stateFilter === `cancelled:${reason}`) groups.push([`cancelled:${reason}`, `cancelled \u00b7 ${reason}`, n]);
    }
    const keep = new Set(groups.map((g) => g[0]));
    for (const el of [...dom.stateFilters.children]) if (!keep.has(el.dataset.filter)) el.remove();
    for (const [id, label, n] of groups) {
      const cls = id === 'all' ? '' : `st-${id.startsWith('cancelled:') ? 'cancelled' : id} ${id.startsWith('cancelled:') ? `rs-${id.slice(10)}` : ''}`;
      chip(dom.stateFilters, id, label, n, view.stateFilter === id, () => {
        view.stateFilter = view.stateFilter === id ? 'all' : id;
        view.tasksDirty = true;
        queueFrame();
      }, cls);
    }
  }

  function renderLegend() {
    if (dom.legend.childElementCount) return;
    const items = [['st-pending', 'pending'], ['st-running', 'running'], ['st-stuck', 'stuck'], ['st-finished', 'finished'],
      ['st-failed', 'failed'], ['st-timed_out', 'timed out'],
      ...REASONS.map((r) => [`st-cancelled rs-${r}`, `cancelled \u00b7 ${r}`]), ['marker', 'input']];
    dom.legend.replaceChildren(...items.map(([cls, label]) => h('span', {}, h('i', { class: `swatch ${cls}` }), label)));
  }

  function rowElapsed(row) {
    if (typeof row.started_at !== 'number') return null;
    const end = typeof row.ended_at === 'number' ? row.ended_at : sessionEnd();
    return end === null ? null : end - row.started_at;
  }

  function setText(el, value) {
    if (el.textContent !== value) el.textContent = value;
  }

  function fillTaskRow(el, index) {
    const key = view.filteredTasks[index];
    const row = view.tasks.get(key);
    if (!row) return;
    if (el.dataset.key !== key || !el.firstChild) {
      el.dataset.key = key;
      el.className = 'vrow task-grid task-row';
      el.replaceChildren(
        h('span', { class: 'task-name mono' }), h('span', { class: 'state' }),
        h('span', {}), h('span', {}), h('span', { class: 'num elapsed' }), h('span', { class: 'num' }),
        h('span', { class: 'action' }));
    }
    const cells = el.children;
    const state = stateOf(row);
    el.dataset.task = row.name;
    el.dataset.state = state;
    el.classList.toggle('selected', view.selected === key);
    setText(cells[0], row.name);
    cells[0].title = row.detail || row.name;
    const label = state === 'cancelled' ? `cancelled \u00b7 ${row.reason || ''}` : STATE_LABEL[state] || state;
    const pillClass = `pill st-${state}${state === 'cancelled' ? ` rs-${reasonOf(row)}` : ''}`;
    let pill = cells[1].firstChild;
    if (!pill) { pill = h('span', {}); cells[1].appendChild(pill); }
    if (pill.className !== pillClass) pill.className = pillClass;
    setText(pill, label);
    pill.title = row.detail || '';
    setText(cells[2], row.interruptible === null ? '\u2014' : (row.interruptible ? 'yes' : 'no'));
    setText(cells[3], typeof row.timeout === 'number' ? fmtDuration(row.timeout) : '\u2014');
    setText(cells[4], fmtDuration(rowElapsed(row)));
    setText(cells[5], String(row.events));
    const action = cells[6];
    if (canAct() && (row.state === 'running' || row.state === 'pending')) {
      let button = action.firstChild;
      if (!button) {
        button = h('button', { type: 'button', class: 'btn small cancel' }, 'Cancel');
        button.addEventListener('click', (event) => {
          event.stopPropagation();
          const target = view.tasks.get(el.dataset.key);
          if (target) cancelTask(target.name, el.dataset.key);
        });
        action.appendChild(button);
      }
      const pending = view.pendingCancel.has(key);
      button.disabled = pending;
      button.dataset.task = row.name;
      setText(button, pending ? 'Cancelling\u2026' : 'Cancel');
    } else if (action.firstChild) {
      action.replaceChildren();
    }
  }

  function timeSpan() {
    const t0 = view.t0 !== null ? view.t0 : 0;
    let t1 = sessionEnd();
    if (t1 === null || t1 - t0 < 0.001) t1 = t0 + 0.001;
    return [t0, t1];
  }

  function fillTimelineRow(el, index) {
    const key = view.filteredTasks[index];
    const row = view.tasks.get(key);
    if (!row) return;
    if (!el.firstChild) {
      el.className = 'vrow tl-row';
      el.replaceChildren(h('span', { class: 'tl-label mono' }), h('div', { class: 'tl-track' }, h('div', { class: 'bar' }, h('span', { class: 'bar-text' }))));
    }
    const [t0, t1] = timeSpan();
    const label = el.firstChild;
    const bar = el.lastChild.firstChild;
    setText(label, row.name);
    label.title = row.name;
    const state = stateOf(row);
    const start = typeof row.started_at === 'number' ? row.started_at : t0;
    const end = typeof row.ended_at === 'number' ? row.ended_at : t1;
    const left = Math.max(0, (start - t0) / (t1 - t0)) * 100;
    const width = Math.max(0.3, ((end - start) / (t1 - t0)) * 100);
    bar.style.left = `${left.toFixed(3)}%`;
    bar.style.width = `${Math.min(width, 100 - left).toFixed(3)}%`;
    const cls = `bar st-${state}${state === 'cancelled' ? ` rs-${reasonOf(row)}` : ''}`;
    if (bar.className !== cls) bar.className = cls;
    bar.dataset.task = row.name;
    bar.dataset.state = state;
    bar.dataset.reason = row.reason || '';
    const what = state === 'cancelled' ? (row.origin ? `${row.reason} by ${row.origin}` : row.reason) : (STATE_LABEL[state] || state);
    setText(bar.firstChild, what || '');
    bar.title = `${row.name}: ${what}, ${fmtDuration(rowElapsed(row))}`;
    el.dataset.key = key;
  }

  function niceStep(span) {
    const steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
    for (const step of steps) if (span / step <= 8) return step;
    return Math.ceil(span / 8 / 3600) * 3600;
  }

  function fmtTick(seconds, step) {
    if (step >= 60) return `${Math.floor(seconds / 60)}m${seconds % 60 ? ` ${Math.round(seconds % 60)}s` : ''}`;
    const decimals = step >= 1 ? 0 : (step >= 0.1 ? 1 : 2);
    return `${seconds.toFixed(decimals)}s`;
  }

  let axisKey = '';
  function renderAxis() {
    const [t0, t1] = timeSpan();
    const step = niceStep(t1 - t0);
    // Redrawn when the span has grown by 1% (or the inputs changed), not every frame.
    const key = `${step}|${Math.round(Math.log(t1 - t0) * 100)}|${view.inputs.length}`;
    if (key === axisKey) return;
    axisKey = key;
    const children = [];
    for (let t = 0; t <= t1 - t0 + 1e-9; t += step) {
      const left = (t / (t1 - t0)) * 100;
      const tick = h('span', { class: 'tick' }, fmtTick(t, step));
      tick.style.left = `${left.toFixed(3)}%`; // CSSOM, not a style attribute (CSP)
      children.push(tick);
    }
    for (const input of view.inputs.slice(-200)) {
      const left = ((input.at - t0) / (t1 - t0)) * 100;
      const said = input.event ? eventText(input.event) : '';
      const marker = h('span', { class: 'marker', title: `input: ${said}` });
      marker.style.left = `${left.toFixed(3)}%`;
      children.push(marker);
    }
    dom.axis.replaceChildren(h('div', { class: 'axis-inner' }, ...children));
  }

  // ---- events ----------------------------------------------------------------------

  function eventCount() {
    if (READ_ONLY) return view.remote.total;
    if (!view.kindFilter) return view.records.length;
    if (!view.eventIndex) {
      view.eventIndex = [];
      view.records.forEach((record, i) => { if (view.kindFilter.has(record.type)) view.eventIndex.push(i); });
    }
    return view.eventIndex.length;
  }

  function eventAt(index) {
    if (READ_ONLY) return remoteRecord(view.remote, index, null);
    if (view.kindFilter && !view.eventIndex) eventCount(); // rebuilt after a filter change
    const i = view.kindFilter ? view.eventIndex[index] : index;
    return view.records[i];
  }

  function kindQuery() {
    return view.kindFilter ? `&kinds=${encodeURIComponent([...view.kindFilter].join(','))}` : '';
  }

  function remoteRecord(store, index, task) {
    const page = Math.floor(index / PAGE);
    const cached = store.pages.get(page);
    if (cached) return cached[index - page * PAGE];
    if (!store.loading.has(page)) {
      store.loading.add(page);
      const target = view;
      const taskPart = task ? `&task=${encodeURIComponent(task)}` : '';
      const kinds = task ? '' : kindQuery();
      getJSON(sessionPath(target.id, `page?start=${page * PAGE}&count=${PAGE}${taskPart}${kinds}`)).then((data) => {
        store.loading.delete(page);
        if (target !== view) return;
        store.pages.set(page, data.records);
        if (store.total !== data.total) { store.total = data.total; target.eventsDirty = true; }
        queueFrame();
        if (task) tvList.queueRefresh(); else eventList.queueRefresh();
      }).catch(() => store.loading.delete(page));
    }
    return null;
  }

  function renderKindChips() {
    const kinds = [...view.kinds.entries()].sort((a, b) => b[1] - a[1]);
    const total = kinds.reduce((sum, [, n]) => sum + n, 0);
    chip(dom.kindFilters, '*', 'all kinds', total, !view.kindFilter, () => setKindFilter(null));
    for (const [kind, n] of kinds) {
      chip(dom.kindFilters, kind, kind, n, !!(view.kindFilter && view.kindFilter.has(kind)), () => setKindFilter(kind),
        kind === 'TaskFailed' || kind === 'HandlerFailed' ? 'st-failed' : '');
    }
    const shown = eventCount();
    dom.eventCount.textContent = READ_ONLY ? `${shown.toLocaleString()} (paged from the recording)` : `${shown.toLocaleString()}`;
  }

  function setKindFilter(kind) {
    if (kind === null) view.kindFilter = null;
    else {
      const next = new Set(view.kindFilter || []);
      if (next.has(kind)) next.delete(kind); else next.add(kind);
      view.kindFilter = next.size ? next : null;
    }
    view.eventIndex = null;
    if (READ_ONLY) view.remote = { total: view.kindFilter ? 0 : view.info.kept, pages: new Map(), loading: new Set() };
    if (READ_ONLY && view.kindFilter) remoteRecord(view.remote, 0, null);
    view.eventsDirty = true;
    eventList.scrollToIndex(0);
    queueFrame();
  }

  function frameLine(frame) {
    return `${frame.function} (${String(frame.file).split('/').pop()}:${frame.line})`;
  }

  function eventText(event) {
    if (!event || typeof event !== 'object') return text(event);
    for (const field of ['text', 'message', 'content']) if (typeof event[field] === 'string') return event[field];
    if (event.data && typeof event.data.text === 'string') return event.data.text;
    const rest = { ...event };
    delete rest.type;
    return Object.keys(rest).length ? text(rest) : '';
  }

  function describe(record) {
    switch (record.type) {
      case 'SessionStarted': return ['session started', `agent ${text(record.agent_id)} \u00b7 environment ${text(record.environment)}`];
      case 'SessionEnded': return ['session ended', ''];
      case 'InputReceived': return ['input', `${record.event && record.event.type ? record.event.type : ''}: ${eventText(record.event)}`];
      case 'HandlerOutput': return [record.event && record.event.type ? String(record.event.type) : 'output', eventText(record.event)];
      case 'HandlerFailed': return ['handler failed', `${(record.error || {}).type || 'Error'}: ${(record.error || {}).message || ''}`];
      case 'TaskQueued': return ['queued', `waiting for a slot (limit ${text(record.limit)})`];
      case 'TaskStarted': {
        const bits = [record.interruptible ? 'interruptible' : 'not interruptible'];
        if (typeof record.timeout === 'number') bits.push(`timeout ${fmtDuration(record.timeout)}`);
        if (record.flavor) bits.push(record.flavor);
        return ['started', bits.join(' \u00b7 ')];
      }
      case 'TaskOutput': return [record.event && record.event.type ? String(record.event.type) : 'output', eventText(record.event)];
      case 'TaskFinished': return ['finished', record.result === null || record.result === undefined ? '' : `\u2192 ${text(record.result)}`];
      case 'TaskFailed': return ['failed', `${(record.error || {}).type || 'Error'}: ${(record.error || {}).message || ''}`];
      case 'TaskCancelled': return ['cancelled', record.origin ? `${text(record.reason)} by ${text(record.origin)}` : text(record.reason)];
      case 'TaskTimedOut': return ['timed out', `after ${fmtDuration(record.timeout)}`];
      case 'TaskStuck': return ['stuck', `${text(record.reason)} (since ${fmtRelative(record.since)})`];
      case 'LoopBlocked': {
        const where = record.stack && record.stack.length ? ` at ${frameLine(record.stack[record.stack.length - 1])}` : '';
        return ['loop blocked', `${fmtDuration(record.duration)} by ${record.task ? `task ${record.task}` : (record.handler ? 'the handler' : 'unknown code')}${where}`];
      }
      default: {
        const rest = { ...record };
        for (const key of ['type', 'seq', 'at', 'source', 'task', 'task_id', 'session_id', 'wall']) delete rest[key];
        return [String(record.type), text(rest)];
      }
    }
  }

  function fillEventRow(el, index, record) {
    if (!el.firstChild) {
      el.replaceChildren(h('span', { class: 'time mono' }), h('span', { class: 'who' }), h('span', { class: 'etype' }), h('span', { class: 'etext' }));
      el.addEventListener('click', () => { if (el._record) showRaw(el._record); });
    }
    if (record && el._record === record) return; // this row already shows it
    el._record = record || null;
    if (!record) {
      el.className = 'vrow ev loading';
      setText(el.children[0], '');
      setText(el.children[1], '');
      setText(el.children[2], '\u2026');
      setText(el.children[3], '');
      return;
    }
    const source = record.source || 'session';
    const kind = record.type || '?';
    let cls = `vrow ev src-${source} type-${kind}`;
    if (kind === 'HandlerFailed' || kind === 'TaskFailed' || kind === 'LoopBlocked') cls += ' failed';
    if (el.className !== cls) el.className = cls;
    el.dataset.seq = String(record.seq);
    el.dataset.type = kind;
    setText(el.children[0], fmtRelative(record.at));
    const who = el.children[1];
    const whoText = source === 'task' ? String(record.task) : (kind === 'InputReceived' ? 'user' : source);
    setText(who, whoText);
    who.className = source === 'task' ? 'who task-tag' : 'who';
    const [label, body] = describe(record);
    setText(el.children[2], label);
    setText(el.children[3], body);
    el.title = body;
  }

  function showRaw(record) {
    dom.raw.textContent = JSON.stringify(record, null, 2);
    if (dom.tv.hidden) { dom.tv.hidden = false; dom.tv.classList.add('raw-only'); }
  }

  // ---- the task view -----------------------------------------------------------------

  function openTaskView(key) {
    const row = view.tasks.get(key);
    if (!row) return;
    view.selected = key;
    dom.tv.hidden = false;
    dom.tv.classList.remove('raw-only');
    view.tv = { key, records: [], total: undefined, store: null };
    if (READ_ONLY) {
      view.tv.store = { total: 0, pages: new Map(), loading: new Set() };
      remoteRecord(view.tv.store, 0, key);
      view.tv.total = 0;
    } else {
      view.tv.records = view.records.filter((r) => r.task !== null && r.task !== undefined && taskKey(r) === key);
    }
    dom.tvCreated.textContent = row.created && row.created.length
      ? row.created.map((f) => `${f.file}:${f.line} in ${f.function}\n    ${f.code}`).join('\n')
      : 'not recorded (the page records it for sessions it watches live)';
    dom.tvStack.textContent = '';
    loadStack();
    tvList.scrollToIndex(0);
    view.tasksDirty = true;
    view.eventsDirty = true;
    queueFrame();
  }

  async function loadStack() {
    const target = view;
    if (!target || !target.tv) return;
    const row = target.tasks.get(target.tv.key);
    if (!row) return;
    if (READ_ONLY || row.state !== 'running' || !target.info.live) {
      dom.tvStack.textContent = row.state === 'running' ? 'not available (not a live session)' : 'the task has ended';
      return;
    }
    try {
      const data = await getJSON(sessionPath(target.id, `tasks/${encodeURIComponent(row.name)}/stack`));
      if (target !== view) return;
      dom.tvStack.textContent = data.stack && data.stack.length
        ? data.stack.map((f) => `${f.file}:${f.line} in ${f.function}\n    ${f.code}`).join('\n')
        : 'no stack (the task has ended or not started yet)';
    } catch (error) {
      dom.tvStack.textContent = `could not read it: ${error.message}`;
    }
  }

  function closeTaskView() {
    if (view) { view.selected = null; view.tv = null; view.tasksDirty = true; }
    dom.tv.hidden = true;
    queueFrame();
  }

  function renderTaskFacts() {
    const row = view.tasks.get(view.tv.key);
    if (!row) return;
    if (view.tv.store) { view.tv.total = view.tv.store.total; }
    const state = stateOf(row);
    const facts = [
      ['state', state === 'cancelled' ? `cancelled (${row.reason})` : (STATE_LABEL[state] || state)],
      ['cancelled by', row.origin || (state === 'cancelled' ? 'not recorded' : '\u2014')],
      ['started', fmtRelative(row.started_at)],
      ['ended', typeof row.ended_at === 'number' ? fmtRelative(row.ended_at) : '\u2014'],
      ['lifetime', fmtDuration(rowElapsed(row))],
      ['flavour', row.flavor || '\u2014'],
      ['interruptible', row.interruptible === null ? '\u2014' : (row.interruptible ? 'yes' : 'no')],
      ['timeout', typeof row.timeout === 'number' ? fmtDuration(row.timeout) : 'none'],
      ['outputs', String(row.events)],
      ['detail', row.detail || '\u2014'],
    ];
    if (row.stuck) facts.push(['stuck', row.stuck]);
    if (row.blocked) facts.push(['blocked the loop', fmtDuration(row.blocked)]);
    const key = JSON.stringify(facts) + row.name;
    if (dom.tvFacts.dataset.key === key) return;
    dom.tvFacts.dataset.key = key;
    setText(dom.tvName, row.name);
    dom.tvFacts.replaceChildren(...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { 'data-fact': k }, v)]));
    const n = view.tv.total !== undefined ? view.tv.total : view.tv.records.length;
    dom.tvCount.textContent = `${n}`;
    tvList.setCount(n);
  }

  // ---- actions ---------------------------------------------------------------------

  async function cancelTask(name, key) {
    const target = view;
    target.pendingCancel.add(key);
    taskList.queueRefresh();
    try {
      const result = await postAction(sessionPath(target.id, `tasks/${encodeURIComponent(name)}/cancel`));
      if (result.queued) showNotice(`The agent's thread is blocked: the cancel of ${name} runs when it is free.`, 'warn');
      else if (!result.cancelled) {
        target.pendingCancel.delete(key);
        showNotice(`Task ${name} was not running.`, 'warn');
      }
    } catch (error) {
      target.pendingCancel.delete(key);
      showNotice(`Cancel failed: ${error.message}`, 'error');
    }
    taskList.queueRefresh();
  }

  dom.interrupt.addEventListener('click', async () => {
    if (!view) return;
    dom.interrupt.disabled = true;
    try {
      const result = await postAction(sessionPath(view.id, 'interrupt'));
      if (result.queued) showNotice('The agent\u2019s thread is blocked: the interrupt runs when it is free.', 'warn');
      else showNotice(`Interrupted: ${result.cancelled} task(s) cancelled.`, 'ok');
    } catch (error) {
      showNotice(`Interrupt failed: ${error.message}`, 'error');
    } finally {
      dom.interrupt.disabled = false;
    }
  });

  dom.download.addEventListener('click', async () => {
    if (!view) return;
    try {
      const response = await fetch(sessionPath(view.id, 'download'), { headers: authHeaders() });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      const link = h('a', { href: URL.createObjectURL(blob), download: `${view.id}.jsonl` });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      showNotice(`Download failed: ${error.message}`, 'error');
    }
  });

  dom.search.addEventListener('input', () => {
    if (!view) return;
    view.search = dom.search.value;
    view.tasksDirty = true;
    queueFrame();
  });

  dom.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    token = dom.tokenInput.value;
    sessionStorage.setItem('taskrunner-token', token);
    dom.tokenForm.hidden = true;
    refreshSessions();
  });

  $('tv-close').addEventListener('click', closeTaskView);
  $('tv-stack-refresh').addEventListener('click', loadStack);

  // ---- lists -----------------------------------------------------------------------

  const taskList = new VList($('tasks'), ROW + 4, fillTaskRow);
  taskList.container.addEventListener('click', (event) => {
    const row = event.target.closest('.task-row');
    if (row && row.dataset.key) openTaskView(row.dataset.key);
  });
  const timeline = new VList($('timeline'), ROW, fillTimelineRow);
  timeline.container.addEventListener('click', (event) => {
    const row = event.target.closest('.tl-row');
    if (row && row.dataset.key) openTaskView(row.dataset.key);
  });
  const eventList = new VList($('events'), ROW, (el, index) => fillEventRow(el, index, eventAt(index)));
  const tvList = new VList($('tv-records'), ROW, (el, index) => {
    const tv = view && view.tv;
    if (!tv) return;
    fillEventRow(el, index, tv.store ? remoteRecord(tv.store, index, tv.key) : tv.records[index]);
  });

  // ---- start -----------------------------------------------------------------------

  window.__taskrunner = { // for tests: the model the page draws from
    view: () => view,
    visibleTaskRows: () => document.querySelectorAll('#tasks .task-row:not([hidden])').length,
    costs: () => ({ ...costs }),
    resetCosts: () => { costs.frame = 0; costs.chunk = 0; },
  };
  dom.mode.textContent = READ_ONLY ? 'recording \u00b7 read-only' : 'live';
  dom.mode.classList.add(READ_ONLY ? 'readonly' : 'live');
  window.addEventListener('resize', () => { axisKey = ''; queueFrame(); });
  if (!token) askToken();
  refreshSessions();
  refreshStatus();
  setInterval(refreshStatus, STATUS_POLL_MS);
  if (!READ_ONLY) {
    setInterval(refreshSessions, SESSION_POLL_MS);
    // Elapsed times and running bars grow while nothing is published: redraw what is in view.
    setInterval(() => {
      if (view && view.info && !view.info.ended && view.counts && (view.counts.get('running') || view.counts.get('stuck'))) queueFrame();
    }, TICK_MS);
  }
})();
