// kairos web page: a jobs table, a page per job, an overview, kept live by the event
// stream. Plain JavaScript with no build step; every piece of data is put in the page
// with textContent (never as HTML), and every request goes to this origin's API.

const API = '/api/v1';
const PAGE_SIZE = 50;
const TOKEN_KEY = 'kairos-token';

const session = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  access: 'read_write',
  // Bumped on every navigation, so an answer for a page left behind is dropped.
  view: 0,
  // What the current view does when an event arrives.
  onEvent: null,
};

// ---------- small helpers ----------

/** Builds an element: h('td', {class: 'x'}, 'text', child). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function pad(number) { return String(number).padStart(2, '0'); }

/** An instant as local `YYYY-MM-DD HH:MM:SS`. */
function absolute(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** `in 5 min`, `3 h ago`. */
function relative(iso, now = Date.now()) {
  if (!iso) return '';
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const size = Math.abs(seconds);
  let text;
  if (size < 1) return 'now';
  if (size < 60) text = `${size} s`;
  else if (size < 3600) text = `${Math.round(size / 60)} min`;
  else if (size < 86400 * 2) text = `${Math.round(size / 360) / 10} h`;
  else text = `${Math.round(size / 8640) / 10} d`;
  return seconds > 0 ? `in ${text}` : `${text} ago`;
}

/** Milliseconds between two instants, shown to the useful precision. */
function millis(fromIso, toIso) {
  if (!fromIso || !toIso) return '—';
  return formatMs(new Date(toIso).getTime() - new Date(fromIso).getTime());
}

function formatMs(ms) {
  if (ms === null || ms === undefined) return '—';
  if (Math.abs(ms) < 1000) return `${Math.round(ms * 10) / 10} ms`;
  if (Math.abs(ms) < 120000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 6000) / 10} min`;
}

function badge(text, kind = text) { return h('span', {class: `badge ${kind}`}, text); }

function debounce(fn, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}

/** Calls `fn` at most once per `wait` ms, the last call always reaching it. */
function throttle(fn, wait) {
  let timer = null;
  let last = 0;
  return (...args) => {
    clearTimeout(timer);
    const due = Math.max(0, last + wait - Date.now());
    timer = setTimeout(() => { last = Date.now(); fn(...args); }, due);
  };
}

let toastTimer = null;
function toast(message, bad = false) {
  const element = document.getElementById('toast');
  element.textContent = message;
  element.className = bad ? 'toast bad' : 'toast';
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { element.hidden = true; }, 4000);
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  return session.token ? {Authorization: `Bearer ${session.token}`} : {};
}

async function api(path, {method = 'GET', body} = {}) {
  const headers = {...authHeaders(), Accept: 'application/json'};
  // The API refuses a POST without this, body or not (docs/threat-model.md).
  if (body !== undefined || method !== 'GET') headers['Content-Type'] = 'application/json';
  const response = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer && answer.error ? answer.error : {};
    if (response.status === 401) askForToken(error.message);
    throw new ApiError(response.status, error.code || 'error', error.message || response.statusText);
  }
  return answer;
}

function enc(id) { return encodeURIComponent(id); }

// ---------- the token ----------

let tokenWaiters = [];

function askForToken(message) {
  const dialog = document.getElementById('token-dialog');
  const error = document.getElementById('token-error');
  if (session.token && message) {
    error.textContent = message;
    error.hidden = false;
  }
  if (!dialog.open) dialog.showModal();
  document.getElementById('token-input').focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function setupTokenDialog() {
  const form = document.getElementById('token-form');
  form.addEventListener('submit', () => {
    const input = document.getElementById('token-input');
    session.token = input.value.trim();
    input.value = '';
    sessionStorage.setItem(TOKEN_KEY, session.token);
    document.getElementById('token-error').hidden = true;
    const waiters = tokenWaiters;
    tokenWaiters = [];
    waiters.forEach((resolve) => resolve());
    start();
  });
  document.getElementById('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    session.token = '';
    location.reload();
  });
}

async function loadAccess() {
  const answer = await api('/access');
  session.access = answer.access;
  const label = document.getElementById('access');
  label.textContent = answer.access === 'read_only' ? 'read-only token' : (answer.token_required ? 'read-write token' : '');
  document.getElementById('forget-token').hidden = !answer.token_required;
  document.body.dataset.access = answer.access;
}

function canWrite() { return session.access === 'read_write'; }

// ---------- the event stream ----------

let eventStream = null;

/** Follows GET /events with fetch (EventSource cannot send the token). */
async function followEvents() {
  if (eventStream) return;
  eventStream = new AbortController();
  const live = document.getElementById('live');
  let delay = 1000;
  while (eventStream && !eventStream.signal.aborted) {
    try {
      const response = await fetch(API + '/events', {headers: authHeaders(), signal: eventStream.signal});
      if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
      live.textContent = 'live';
      live.classList.add('on');
      document.body.dataset.live = 'on';
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatchEvent(block);
        }
      }
    } catch (error) {
      if (eventStream && eventStream.signal.aborted) return;
    }
    live.textContent = 'offline';
    live.classList.remove('on');
    document.body.dataset.live = 'off';
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

/**
 * The header's count of failed jobs, linking to the failed filter. Read as the
 * `total` of a one-job page of `?state=failed`: one counting query in the store, far
 * less than the overview (which reads recent runs and expands fire times).
 */
async function refreshFailedCount() {
  const link = document.getElementById('failed-count');
  try {
    const answer = await api('/jobs?state=failed&limit=1');
    const count = answer.total || 0;
    link.textContent = `${count.toLocaleString()} failed`;
    link.hidden = count === 0;
    link.dataset.count = String(count);
  } catch { /* the next event or navigation tries again */ }
}
const refreshFailedCountSoon = throttle(refreshFailedCount, 2000);

/** Events after which the number of failed jobs may have changed. */
const JOB_CHANGES = ['job_error', 'job_executed', 'job_added', 'job_removed', 'job_modified', 'job_submitted'];

function dispatchEvent(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  if (data.length === 0) return;
  let event;
  try { event = JSON.parse(data.join('\n')); } catch { return; }
  if (name.startsWith('scheduler_')) refreshSchedulerState();
  if (JOB_CHANGES.includes(name)) refreshFailedCountSoon();
  if (session.onEvent) session.onEvent(name, event);
}

async function refreshSchedulerState() {
  try {
    const health = await fetch(API + '/health').then((response) => response.json());
    const state = document.getElementById('scheduler-state');
    state.textContent = `scheduler ${health.scheduler}`;
    state.className = `badge ${health.scheduler}`;
  } catch { /* the next event or navigation tries again */ }
}

// ---------- routing ----------

function route() {
  const hash = location.hash || '#/jobs';
  if (document.body.dataset.access) refreshFailedCountSoon();
  session.view += 1;
  session.onEvent = null;
  const main = document.getElementById('main');
  main.replaceChildren();
  for (const link of document.querySelectorAll('[data-nav]')) link.removeAttribute('aria-current');
  const jobMatch = hash.match(/^#\/jobs\/(.+)$/);
  if (jobMatch) {
    showJob(main, decodeURIComponent(jobMatch[1]), session.view);
  } else if (hash.startsWith('#/overview')) {
    document.querySelector('[data-nav="overview"]').setAttribute('aria-current', 'page');
    showOverview(main, session.view);
  } else {
    document.querySelector('[data-nav="jobs"]').setAttribute('aria-current', 'page');
    showJobs(main, session.view, new URLSearchParams(hash.split('?')[1] || ''));
  }
}

function current(view) { return view === session.view; }

function failure(main, error) {
  main.append(h('p', {class: 'error', role: 'alert'}, `Could not load: ${error.message}`));
}

// ---------- the jobs table ----------

async function showJobs(main, view, params) {
  const filters = {
    q: params.get('q') || '',
    state: params.get('state') || '',
    task: params.get('task') || '',
    jobstore: params.get('jobstore') || '',
    offset: Number(params.get('offset') || 0),
  };
  const search = h('input', {type: 'search', id: 'job-search', value: filters.q, placeholder: 'id or name', 'aria-controls': 'jobs-table'});
  const state = h('select', {id: 'state-filter'},
    h('option', {value: ''}, 'all'), h('option', {value: 'scheduled'}, 'scheduled'), h('option', {value: 'paused'}, 'paused'),
    // The API lists failed and broken jobs together (both are set aside); each row's
    // badge tells which.
    h('option', {value: 'failed'}, 'failed'), h('option', {value: 'broken'}, 'broken'));
  state.value = filters.state;
  const task = h('select', {id: 'task-filter'}, h('option', {value: ''}, 'all'));
  const store = h('select', {id: 'store-filter'}, h('option', {value: ''}, 'all'));
  const summary = h('p', {class: 'muted', id: 'jobs-summary', 'aria-live': 'polite'}, 'Loading…');
  const body = h('tbody');
  const table = h('table', {id: 'jobs-table'},
    h('caption', {class: 'skip'}, 'Jobs by next run time'),
    h('thead', {}, h('tr', {},
      h('th', {scope: 'col'}, 'Id'), h('th', {scope: 'col', class: 'optional'}, 'Name'), h('th', {scope: 'col'}, 'Task'),
      h('th', {scope: 'col', class: 'optional'}, 'Trigger'), h('th', {scope: 'col'}, 'Next run ▲'),
      h('th', {scope: 'col'}, 'Last run'), h('th', {scope: 'col'}, 'State'))),
    body);
  const previous = h('button', {type: 'button', id: 'previous-page'}, '← Previous');
  const next = h('button', {type: 'button', id: 'next-page'}, 'Next →');
  main.append(
    h('h1', {}, 'Jobs'),
    h('form', {class: 'filters', role: 'search', onsubmit: (event) => event.preventDefault()},
      h('label', {for: 'job-search'}, 'Search', search),
      h('label', {for: 'state-filter'}, 'State', state),
      h('label', {for: 'task-filter'}, 'Task', task),
      h('label', {for: 'store-filter'}, 'Store', store)),
    summary,
    h('div', {class: 'table-wrap'}, table),
    h('div', {class: 'pager'}, previous, next));

  const go = (changes) => {
    const merged = {...filters, offset: 0, ...changes};
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(merged)) if (value) query.set(key, value);
    const target = `#/jobs${query.toString() ? '?' + query : ''}`;
    if (location.hash !== target) history.replaceState(null, '', target);
    Object.assign(filters, merged);
    load();
  };
  search.addEventListener('input', debounce(() => go({q: search.value.trim()}), 250));
  state.addEventListener('change', () => go({state: state.value}));
  task.addEventListener('change', () => go({task: task.value}));
  store.addEventListener('change', () => go({jobstore: store.value}));
  previous.addEventListener('click', () => go({offset: Math.max(0, filters.offset - PAGE_SIZE)}));
  next.addEventListener('click', () => go({offset: filters.offset + PAGE_SIZE}));

  let facetsFilled = false;
  const fillFacets = (facets) => {
    if (facetsFilled || !facets) return;
    facetsFilled = true;
    for (const name of facets.tasks) task.append(h('option', {value: name}, name));
    for (const name of facets.jobstores) store.append(h('option', {value: name}, name));
    task.value = filters.task;
    store.value = filters.jobstore;
  };

  let loading = 0;
  const load = async () => {
    const ticket = ++loading;
    const query = new URLSearchParams({limit: PAGE_SIZE, offset: filters.offset, last_run: 'true'});
    for (const key of ['q', 'state', 'task', 'jobstore']) if (filters[key]) query.set(key, filters[key]);
    let answer;
    try {
      answer = await api(`/jobs?${query}`);
    } catch (error) {
      if (current(view)) summary.textContent = `Could not load the jobs: ${error.message}`;
      return;
    }
    if (!current(view) || ticket !== loading) return;
    fillFacets(answer.facets);
    const now = Date.now();
    body.replaceChildren(...answer.jobs.map((job) => jobRow(job, now)));
    if (answer.jobs.length === 0) {
      body.append(h('tr', {}, h('td', {colspan: 7, class: 'muted'}, 'No job matches.')));
    }
    const first = answer.total === 0 ? 0 : filters.offset + 1;
    const last = filters.offset + answer.jobs.length;
    summary.textContent = `${first.toLocaleString()}–${last.toLocaleString()} of ${answer.total.toLocaleString()} jobs`;
    previous.disabled = filters.offset === 0;
    next.disabled = last >= answer.total;
    if (!document.body.dataset.jobsRenderedAt) {
      // Read by the browser test: milliseconds from navigation to the first page shown.
      document.body.dataset.jobsRenderedAt = String(Math.round(performance.now()));
    }
    document.body.dataset.jobsLoaded = String(Number(document.body.dataset.jobsLoaded || 0) + 1);
  };
  session.onEvent = debounce(() => load(), 1000);
  await load();
}

/** A job's state as the API names it (`paused` alone on an older server). */
function jobState(job) {
  return job.state || (job.paused ? 'paused' : 'scheduled');
}

/** The state badge, and what else a job's row or page flags: retrying, overdue. */
function stateBadges(job) {
  const state = jobState(job);
  const overdue = job.success_watch && job.success_watch.overdue;
  return [
    badge(state, `state ${state}`),
    job.retrying ? [' ', badge(`retrying ${job.retrying.attempt}/${maxAttempts(job)}`, 'retrying')] : null,
    overdue ? [' ', h('span', {class: 'badge overdue', title: `No success since ${absolute(job.success_watch.last_success)}; expected within ${job.options.expect_success_within}`}, 'overdue')] : null,
  ].flat().filter(Boolean);
}

/** How many attempts a run of `job` gets (1 without a retry policy). */
function maxAttempts(job) {
  return job && job.options && job.options.retry ? job.options.retry.max_attempts : 1;
}

function jobRow(job, now) {
  const state = jobState(job);
  const last = job.last_run;
  const problem = ['failed', 'broken'].includes(state) || (job.success_watch && job.success_watch.overdue) ||
    (last && ['error', 'timeout', 'missed'].includes(last.outcome));
  return h('tr', {class: problem ? 'problem' : null, 'data-job-id': job.id},
    h('td', {}, h('a', {href: `#/jobs/${enc(job.id)}`, class: 'mono'}, job.id)),
    h('td', {class: 'optional'}, job.name),
    h('td', {}, job.task),
    h('td', {class: 'optional mono'}, job.trigger_words),
    h('td', {class: 'when'}, job.next_run_time
      ? [absolute(job.next_run_time), h('span', {class: 'sub'}, relative(job.next_run_time, now))]
      : h('span', {class: 'muted'}, '—')),
    h('td', {class: 'when'}, last
      ? [badge(last.outcome), h('span', {class: 'sub'}, relative(last.finished_at, now))]
      : h('span', {class: 'muted'}, 'never')),
    h('td', {class: 'state'}, stateBadges(job), job.from_config ? [' ', badge('config', 'config')] : null));
}

// ---------- one job ----------

async function showJob(main, id, view) {
  const heading = h('h1', {}, id);
  const actions = h('div', {class: 'actions', role: 'group', 'aria-label': 'Actions'});
  const settings = h('dl', {class: 'settings'});
  const times = h('ol', {class: 'times', id: 'fire-times'});
  const runsBody = h('tbody', {id: 'runs-body'});
  const reschedule = h('section', {class: 'reschedule', 'aria-labelledby': 'reschedule-title'});
  const status = h('div', {id: 'job-status'});
  const explanation = h('section', {class: 'explain', id: 'explain', 'aria-labelledby': 'explain-title'},
    h('h2', {id: 'explain-title'}, 'Why it runs when it does'), h('p', {class: 'muted'}, 'Loading…'));
  main.append(
    h('p', {}, h('a', {href: '#/jobs'}, '← All jobs')),
    heading, actions, status, explanation,
    h('div', {class: 'grid'},
      h('section', {'aria-labelledby': 'settings-title'}, h('h2', {id: 'settings-title'}, 'Settings'), settings),
      h('section', {'aria-labelledby': 'times-title'}, h('h2', {id: 'times-title'}, 'Next ten fire times'), times),
      reschedule),
    h('section', {'aria-labelledby': 'runs-title'},
      h('h2', {id: 'runs-title'}, 'Runs'),
      h('div', {class: 'table-wrap'}, h('table', {id: 'runs-table'},
        h('thead', {}, h('tr', {},
          h('th', {scope: 'col'}, 'Outcome'), h('th', {scope: 'col'}, 'Scheduled'), h('th', {scope: 'col'}, 'Started'),
          h('th', {scope: 'col'}, 'Lateness'), h('th', {scope: 'col'}, 'Duration'), h('th', {scope: 'col'}, 'Output'))),
        runsBody))));

  let job;
  const loadJob = async () => {
    try {
      job = await api(`/jobs/${enc(id)}`);
    } catch (error) {
      if (!current(view)) return;
      if (error.status === 404) {
        actions.replaceChildren();
        status.replaceChildren();
        explanation.replaceChildren();
        settings.replaceChildren(h('p', {class: 'muted', id: 'job-gone'}, 'This job is gone (removed, or a one-off job that ran). Its runs are below.'));
        times.replaceChildren();
        reschedule.replaceChildren();
        job = null;
        return;
      }
      failure(main, error);
      return;
    }
    if (!current(view)) return;
    heading.textContent = job.name && job.name !== job.id ? `${job.name} (${job.id})` : job.id;
    const changed = () => { loadJob(); loadTimes(); loadExplain(); };
    renderActions(actions, job, changed);
    renderStatus(status, job, changed);
    renderSettings(settings, job);
    if (!reschedule.dataset.built) renderReschedule(reschedule, job, changed);
  };
  const loadTimes = async () => {
    try {
      const answer = await api(`/jobs/${enc(id)}/fire_times?count=10`);
      if (!current(view)) return;
      times.replaceChildren(...answer.fire_times.map((time) => h('li', {}, time)));
      if (answer.fire_times.length === 0) times.replaceChildren(h('li', {class: 'muted'}, 'none (paused, or the schedule is over)'));
    } catch (error) {
      if (current(view) && error.status !== 404) times.replaceChildren(h('li', {class: 'error'}, error.message));
    }
  };
  const loadExplain = async () => {
    try {
      const answer = await api(`/jobs/${enc(id)}/explain`);
      if (current(view)) renderExplain(explanation, answer);
    } catch (error) {
      if (current(view) && error.status !== 404) {
        explanation.replaceChildren(h('h2', {id: 'explain-title'}, 'Why it runs when it does'), h('p', {class: 'error'}, error.message));
      }
    }
  };
  // The attempt count shown beside a run ("attempt 2/5") takes the job's retry policy
  // once the job is read.
  const row = (run) => runRow(run, maxAttempts(job));
  const loadRuns = async () => {
    try {
      const answer = await api(`/jobs/${enc(id)}/runs?limit=100`);
      if (!current(view)) return;
      runsBody.replaceChildren(...answer.runs.map(row));
      if (answer.runs.length === 0) runsBody.append(h('tr', {}, h('td', {colspan: 6, class: 'muted'}, 'No runs yet.')));
    } catch (error) {
      if (current(view)) runsBody.replaceChildren(h('tr', {}, h('td', {colspan: 6, class: 'error'}, error.message)));
    }
  };
  // Records are written to the store in batches, a moment after the event: the run
  // in the event is shown at once and the table re-read a little later.
  const refreshRuns = debounce(loadRuns, 1500);
  const refreshJob = debounce(() => { loadJob(); loadTimes(); loadExplain(); }, 200);
  session.onEvent = (name, event) => {
    const jobId = event.job_id || (event.run && event.run.job_id);
    if (jobId !== id) return;
    if (event.run && !runsBody.querySelector(`[data-run-id="${CSS.escape(event.run.run_id)}"]`)) {
      const placeholder = runsBody.querySelector('td[colspan]');
      if (placeholder) placeholder.parentElement.remove();
      runsBody.prepend(row(event.run));
    }
    if (['job_executed', 'job_error', 'job_missed', 'job_max_instances'].includes(name)) refreshRuns();
    if ([...JOB_CHANGES, 'job_missed', 'job_max_instances', 'alert'].includes(name)) refreshJob();
  };
  // The job first: the runs table shows attempts out of its retry policy's.
  await loadJob();
  await Promise.all([loadTimes(), loadRuns(), loadExplain()]);
}

function renderActions(actions, job, changed) {
  const readOnly = !canWrite();
  const why = readOnly ? 'This token may only read' : null;
  const act = async (button, path, done) => {
    button.disabled = true;
    try {
      const answer = await api(path, {method: 'POST'});
      toast(done(answer));
      changed();
    } catch (error) {
      toast(error.message, true);
    } finally {
      button.disabled = readOnly;
    }
  };
  const pause = h('button', {type: 'button', id: 'pause-button', disabled: readOnly, title: why},
    job.paused ? 'Resume' : 'Pause');
  pause.addEventListener('click', () => act(pause, `/jobs/${enc(job.id)}/${job.paused ? 'resume' : 'pause'}`,
    (answer) => (answer && answer.removed ? answer.message : (job.paused ? 'Resumed' : 'Paused'))));
  const run = h('button', {type: 'button', id: 'run-button', disabled: readOnly, title: why}, 'Run now');
  run.addEventListener('click', () => act(run, `/jobs/${enc(job.id)}/run`, startedMessage));
  const remove = h('button', {type: 'button', id: 'remove-button', class: 'danger',
    disabled: readOnly || job.from_config, title: job.from_config ? 'Defined in the config files' : why}, 'Remove…');
  remove.addEventListener('click', async () => {
    if (!(await confirmAction(`Remove job ${job.id}? Its run history stays.`, 'Remove'))) return;
    try {
      await api(`/jobs/${enc(job.id)}`, {method: 'DELETE'});
      toast(`Removed ${job.id}`);
      location.hash = '#/jobs';
    } catch (error) {
      toast(error.message, true);
    }
  });
  actions.replaceChildren(...stateBadges(job), pause, run, remove);
  actions.dataset.state = jobState(job);
}

/** The toast after a run is asked for: a failed job's run gets its id only once due. */
function startedMessage(answer) {
  return answer && answer.run_id ? `Started run ${answer.run_id}` : 'Running again with fresh attempts';
}

/**
 * What needs attention on a job's page: a failed job's failure with "Run again", a
 * broken job's reason, a pending retry, the dead-man's switch overdue
 * (docs/lifecycle.md "Failed runs", docs/alerts.md).
 */
function renderStatus(status, job, changed) {
  const readOnly = !canWrite();
  const notes = [];
  if (job.failure) {
    const failure = job.failure;
    const again = h('button', {type: 'button', id: 'run-again-button', class: 'primary', disabled: readOnly,
      title: readOnly ? 'This token may only read' : null}, 'Run again');
    again.addEventListener('click', async () => {
      again.disabled = true;
      try {
        toast(startedMessage(await api(`/jobs/${enc(job.id)}/run`, {method: 'POST'})));
        changed();
      } catch (error) {
        toast(error.message, true);
        again.disabled = readOnly;
      }
    });
    notes.push(h('div', {class: 'notice bad', id: 'job-failure', role: 'status'},
      h('p', {}, h('strong', {}, 'Failed for good: '),
        `its run for ${absolute(failure.scheduled_time)} failed ${failure.attempts} time${failure.attempts === 1 ? '' : 's'}, the last at ${absolute(failure.at)} (${relative(failure.at)}).`),
      failure.error ? h('pre', {class: 'mono', id: 'job-failure-error'}, failure.error) : null,
      h('div', {class: 'row'}, again)));
  }
  if (job.broken) {
    notes.push(h('div', {class: 'notice bad', id: 'job-broken', role: 'status'},
      h('p', {}, h('strong', {}, 'Broken: '), 'set aside because its trigger could not be computed; a new trigger ends it.'),
      h('pre', {class: 'mono'}, job.broken)));
  }
  if (job.retrying) {
    const at = job.next_run_time || job.retrying.scheduled_time;
    notes.push(h('div', {class: 'notice warn', id: 'job-retrying', role: 'status'},
      h('p', {}, h('strong', {}, 'Retrying: '),
        `its run for ${absolute(job.retrying.scheduled_time)} failed; attempt ${job.retrying.attempt} of ${maxAttempts(job)} is due at ${absolute(at)} (${relative(at)}).`)));
  }
  if (job.success_watch && job.success_watch.overdue) {
    const watch = job.success_watch;
    notes.push(h('div', {class: 'notice warn', id: 'job-overdue', role: 'status'},
      h('p', {}, h('strong', {}, 'Overdue: '),
        `no successful run within ${job.options.expect_success_within} (expect_success_within); ` +
        `${watch.last_success ? `the last success ended ${absolute(watch.last_success)}` : 'no success since its watch began'}, ` +
        `overdue since ${absolute(watch.deadline)} (${relative(watch.deadline)}).`)));
  }
  status.replaceChildren(...notes);
}

/** The "why didn't it run?" answer: the sentence first, then the details. */
function renderExplain(section, answer) {
  const recent = answer.recent || [];
  section.replaceChildren(
    h('h2', {id: 'explain-title'}, 'Why it runs when it does'),
    h('p', {class: 'summary', id: 'explain-summary'}, answer.summary),
    h('details', {id: 'explain-details'},
      h('summary', {}, `Details: next run ${answer.next_run_time ? absolute(answer.next_run_time) : '—'} (${answer.next_run_reason}), ` +
        `${recent.length} recent scheduled time${recent.length === 1 ? '' : 's'}`),
      recent.length === 0
        ? h('p', {class: 'muted'}, 'No scheduled time in its run history yet.')
        : h('div', {class: 'table-wrap'}, h('table', {id: 'explain-recent'},
          h('caption', {class: 'skip'}, 'What became of each recent scheduled time'),
          h('thead', {}, h('tr', {},
            h('th', {scope: 'col'}, 'Scheduled'), h('th', {scope: 'col'}, 'Outcome'),
            h('th', {scope: 'col'}, 'Attempts'), h('th', {scope: 'col'}, 'Detail'))),
          h('tbody', {}, ...recent.map((time) => h('tr', {class: ['failed', 'timed_out', 'missed'].includes(time.outcome) ? 'problem' : null},
            h('td', {class: 'when'}, absolute(time.scheduled_time)),
            h('td', {}, badge(time.outcome, EXPLAIN_BADGES[time.outcome] || time.outcome)),
            h('td', {}, String(time.attempts)),
            h('td', {}, time.detail))))))));
}

/** The badge colour of each outcome `explain` names, as the run outcomes have theirs. */
const EXPLAIN_BADGES = {ran: 'success', retried: 'success', failed: 'error', timed_out: 'timeout', missed: 'missed', skipped: 'skipped', taken_back: 'skipped'};

function confirmAction(text, label) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-button').textContent = label;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), {once: true});
  });
}

function renderSettings(settings, job) {
  const row = (term, ...value) => [h('dt', {}, term), h('dd', {}, ...value)];
  // Each option's value is findable by its API name (`#option-overlap`).
  const option = (name, term, value) => [h('dt', {}, term), h('dd', {id: `option-${name.replaceAll('_', '-')}`}, value)];
  settings.replaceChildren(
    ...row('Name', job.name),
    ...row('Task', job.task),
    ...row('Trigger', h('span', {class: 'mono', id: 'trigger-words'}, job.trigger_words), h('span', {class: 'sub muted'}, ` ${job.trigger_text}`)),
    ...row('Next run', job.next_run_time ? `${absolute(job.next_run_time)} (${relative(job.next_run_time)})` : `— (${jobState(job) === 'scheduled' ? 'none left' : jobState(job)})`),
    ...row('Store', job.jobstore || '—'),
    ...row('Executor', job.executor),
    ...option('misfire_grace_time', 'Misfire grace', job.options.misfire_grace_time || 'none'),
    ...option('coalesce', 'Coalesce', job.options.coalesce ? 'yes' : 'no'),
    ...option('max_instances', 'Max instances', String(job.options.max_instances)),
    // What a run due while max_instances runs go on does; `skip` before the option
    // existed.
    ...option('overlap', 'Overlap', job.options.overlap ?? 'skip'),
    ...option('retry', 'Retry', retryText(job.options.retry)),
    ...option('expect_success_within', 'Expect success within', job.options.expect_success_within || 'none'),
    ...option('jitter', 'Jitter', job.options.jitter || 'none'),
    ...row('Defined in', job.from_config ? 'config files (read-only here)' : 'API or library'),
    ...row('Args', h('pre', {class: 'mono'}, JSON.stringify(job.args, null, 2))));
}

/** A retry policy in words: `3 attempts, waits 1s ×2 up to 5m`. */
function retryText(retry) {
  if (!retry) return 'none';
  return `${retry.max_attempts} attempts, waits ${retry.initial_delay} ×${retry.multiplier} up to ${retry.max_delay}`;
}

function renderReschedule(section, job, changed) {
  section.dataset.built = 'true';
  const readOnly = !canWrite() || job.from_config;
  const input = h('input', {id: 'reschedule-words', type: 'text', value: job.trigger_words, spellcheck: 'false',
    'aria-describedby': 'reschedule-help', disabled: readOnly});
  const preview = h('ol', {class: 'times', id: 'reschedule-preview', 'aria-live': 'polite'});
  const message = h('p', {id: 'reschedule-error', class: 'error', role: 'alert', hidden: true});
  const apply = h('button', {type: 'submit', class: 'primary', id: 'reschedule-apply', disabled: true}, 'Reschedule');
  let previewed = null;
  const update = debounce(async () => {
    const words = input.value.trim();
    apply.disabled = true;
    previewed = null;
    if (!words) return;
    try {
      const answer = await api('/preview', {method: 'POST', body: {words, count: 5}});
      if (input.value.trim() !== words) return;
      previewed = answer.trigger;
      message.hidden = true;
      preview.replaceChildren(...answer.fire_times.map((time) => h('li', {}, time)));
      if (answer.fire_times.length === 0) preview.replaceChildren(h('li', {class: 'muted'}, 'never fires'));
      apply.disabled = readOnly || answer.fire_times.length === 0;
    } catch (error) {
      if (input.value.trim() !== words) return;
      preview.replaceChildren();
      message.textContent = error.message;
      message.hidden = false;
    }
  }, 250);
  input.addEventListener('input', update);
  const form = h('form', {id: 'reschedule-form'},
    h('label', {for: 'reschedule-words'}, 'New trigger'), input,
    h('p', {id: 'reschedule-help', class: 'muted'}, 'kairos next words, e.g. cron hour=3 minute=30, interval minutes=15, crontab "0 3 * * 1-5".'),
    message,
    h('p', {class: 'muted'}, 'Would fire at:'), preview,
    h('div', {class: 'row'}, apply));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!previewed) return;
    apply.disabled = true;
    try {
      await api(`/jobs/${enc(job.id)}/reschedule`, {method: 'POST', body: {trigger: previewed}});
      toast('Rescheduled');
      changed();
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    } finally {
      apply.disabled = readOnly || !previewed;
    }
  });
  section.replaceChildren(h('h2', {id: 'reschedule-title'}, 'Reschedule'));
  if (readOnly) {
    section.append(h('p', {class: 'muted'}, job.from_config ? 'Defined in the config files: edit them instead.' : 'This token may only read.'));
  }
  section.append(form);
  update();
}

/** A run's row; `attempts`: how many attempts its job's runs get, where known. */
function runRow(run, attempts = null) {
  const problem = ['error', 'timeout', 'missed'].includes(run.outcome);
  const text = [run.error ? `error: ${run.error}` : null, run.output || null].filter(Boolean).join('\n\n');
  return h('tr', {class: problem ? 'problem' : null, 'data-run-id': run.run_id},
    h('td', {}, badge(run.outcome), attemptText(run, attempts)),
    h('td', {class: 'when'}, absolute(run.scheduled_time)),
    h('td', {class: 'when'}, absolute(run.started_at)),
    h('td', {}, millis(run.scheduled_time, run.started_at)),
    h('td', {}, millis(run.started_at, run.finished_at)),
    h('td', {}, text ? h('details', {}, h('summary', {}, run.error ? 'error' : 'output'), h('pre', {}, text)) : h('span', {class: 'muted'}, '—')));
}

/** `attempt 2/5` under a retried run's outcome; nothing for a first attempt. */
function attemptText(run, attempts) {
  if (!(run.attempt > 1)) return null;
  const of = attempts && attempts >= run.attempt ? `/${attempts}` : '';
  return h('span', {class: 'sub attempt'}, `attempt ${run.attempt}${of}`);
}

// ---------- the overview ----------

async function showOverview(main, view) {
  main.append(h('h1', {}, 'Overview'));
  const body = h('div', {id: 'overview'}, h('p', {class: 'muted'}, 'Loading…'));
  main.append(body);
  const load = async () => {
    let data;
    try {
      data = await api('/overview');
    } catch (error) {
      if (current(view)) body.replaceChildren(h('p', {class: 'error'}, error.message));
      return;
    }
    if (!current(view)) return;
    body.replaceChildren(...renderOverview(data).filter(Boolean));
  };
  session.onEvent = debounce(load, 2000);
  await load();
}

function renderOverview(data) {
  const totals = {success: 0, error: 0, timeout: 0, missed: 0, skipped: 0};
  for (const minute of data.runs.minutes) for (const key of Object.keys(totals)) totals[key] += minute[key];
  const failed = totals.error + totals.timeout;
  const card = (label, value, alert = false) => h('div', {class: alert ? 'card alert' : 'card'},
    h('div', {class: 'muted'}, label), h('div', {class: 'value'}, value));
  const upcoming = data.upcoming.hourly.reduce((sum, count) => sum + count, 0);
  const parts = [
    h('div', {class: 'cards'},
      card('Jobs', data.jobs.toLocaleString()),
      data.job_states
        ? h('a', {href: '#/jobs?state=failed', class: data.job_states.failed > 0 ? 'card alert' : 'card', id: 'failed-jobs-card'},
          h('div', {class: 'muted'}, 'Failed jobs'), h('div', {class: 'value'}, data.job_states.failed.toLocaleString()))
        : null,
      card('Scheduler', data.scheduler_state),
      data.history_runs != null ? card('Run records kept', data.history_runs.toLocaleString()) : null,
      card('Fires, next 24 h', `${upcoming.toLocaleString()}${data.upcoming.truncated ? '+' : ''}`),
      card('Runs, last hour', (totals.success + failed + totals.missed + totals.skipped).toLocaleString()),
      card('Failed, last hour', failed.toLocaleString(), failed > 0),
      card('Missed, last hour', totals.missed.toLocaleString(), totals.missed > 0),
      data.config && data.config.store
        ? card('Config generation', String(data.config.store.generation), data.config.node_hash != null && !data.config.current)
        : null),
    // Why an edit did not apply: the store holds another node's newer config.
    data.config
      ? h('p', {class: data.config.node_hash != null && !data.config.current ? 'error' : 'muted', id: 'config-generation'}, data.config.message)
      : null,
    h('h2', {}, 'Upcoming fires, next 24 hours'),
    data.upcoming.truncated
      ? h('p', {class: 'muted', id: 'timeline-truncated'}, 'Counted from the earliest 1,000 scheduled jobs (and up to 1,440 fires each); more are due.')
      : null,
    timeline(data.upcoming),
    h('h2', {}, 'Runs per minute, last hour'),
    h('div', {class: 'legend'}, ...['success', 'error', 'timeout', 'missed', 'skipped'].map((key) =>
      h('span', {}, h('span', {class: `swatch s-${key}`}), key))),
    runsChart(data.runs),
    h('h2', {}, 'Lateness per minute (p50, p99)'),
    h('div', {class: 'legend'}, h('span', {}, h('span', {class: 'swatch s-p50'}), 'p50'), h('span', {}, h('span', {class: 'swatch s-p99'}), 'p99')),
    latenessChart(data.runs),
    h('h2', {}, 'Recent problems'),
  ];
  if (data.problems.length === 0) parts.push(h('p', {class: 'muted'}, 'No failed or missed runs recently.'));
  else parts.push(h('div', {class: 'table-wrap'}, h('table', {id: 'problems'},
    h('thead', {}, h('tr', {}, h('th', {}, 'Job'), h('th', {}, 'Outcome'), h('th', {}, 'Scheduled'), h('th', {}, 'Error'))),
    h('tbody', {}, ...data.problems.map((run) => h('tr', {class: 'problem'},
      h('td', {}, h('a', {href: `#/jobs/${enc(run.job_id)}`, class: 'mono'}, run.job_id)),
      h('td', {}, badge(run.outcome), attemptText(run, null)), h('td', {class: 'when'}, absolute(run.scheduled_time)),
      h('td', {}, run.error || '—')))))));
  if (data.nodes.length > 1) {
    parts.push(h('h2', {}, 'Cluster nodes'), h('div', {class: 'table-wrap'}, h('table', {id: 'nodes'},
      h('thead', {}, h('tr', {}, h('th', {}, 'Node'), h('th', {}, 'Host'), h('th', {}, 'Version'), h('th', {}, 'Started'),
        h('th', {}, 'Heartbeat'), h('th', {}, 'Running'), h('th', {}, 'Lateness p99'), h('th', {}, 'State'))),
      h('tbody', {}, ...data.nodes.map((node) => h('tr', {class: node.alive ? null : 'problem'},
        h('td', {class: 'mono'}, node.id, node.this_node ? ' (this)' : ''), h('td', {}, `${node.host} pid ${node.pid}`),
        h('td', {}, node.version), h('td', {class: 'when'}, absolute(node.started)),
        h('td', {class: 'when'}, relative(node.last_heartbeat)),
        h('td', {}, node.stats ? `${node.stats.running} of ${node.stats.capacity}` : '—'),
        h('td', {}, node.stats && node.stats.ended ? formatMs(node.stats.lateness_p99_ms) : '—'),
        h('td', {}, badge(node.alive ? 'alive' : 'dead', node.alive ? 'success' : 'error'))))))));
  }
  return parts;
}

const CHART_WIDTH = 720;
const CHART_HEIGHT = 160;
const MARGIN = {left: 40, right: 8, top: 8, bottom: 22};

function axes(chart, max, labels, unit) {
  const innerHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  chart.append(svg('line', {x1: MARGIN.left, y1: CHART_HEIGHT - MARGIN.bottom, x2: CHART_WIDTH - MARGIN.right, y2: CHART_HEIGHT - MARGIN.bottom, stroke: '#9ca3af'}));
  chart.append(svg('text', {x: 4, y: MARGIN.top + 8}, `${formatNumber(max)}${unit}`));
  chart.append(svg('text', {x: 4, y: MARGIN.top + innerHeight}, `0${unit}`));
  for (const [x, text] of labels) chart.append(svg('text', {x, y: CHART_HEIGHT - 6}, text));
}

function formatNumber(value) {
  return value >= 100 ? String(Math.round(value)) : String(Math.round(value * 10) / 10);
}

function timeline(upcoming) {
  const counts = upcoming.hourly;
  const max = Math.max(1, ...counts);
  const from = new Date(upcoming.from);
  const innerWidth = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const innerHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const width = innerWidth / counts.length;
  const chart = svg('svg', {viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, class: 'chart', role: 'img', id: 'timeline',
    'aria-label': `Fires per hour over the next 24 hours: ${counts.join(', ')}`});
  counts.forEach((count, index) => {
    const height = (count / max) * innerHeight;
    const hour = new Date(from.getTime() + index * 3600000);
    const bar = svg('rect', {x: MARGIN.left + index * width + 1, y: MARGIN.top + innerHeight - height, width: Math.max(1, width - 2), height, fill: '#2563eb'});
    bar.append(svg('title', {}, `${pad(hour.getHours())}:00 — ${count} fires`));
    chart.append(bar);
  });
  const labels = [];
  for (let index = 0; index < counts.length; index += 3) {
    const hour = new Date(from.getTime() + index * 3600000);
    labels.push([MARGIN.left + index * width, `${pad(hour.getHours())}:00`]);
  }
  axes(chart, max, labels, '');
  return chart;
}

function runsChart(runs) {
  const keys = ['success', 'error', 'timeout', 'missed', 'skipped'];
  const colours = {success: '#16a34a', error: '#dc2626', timeout: '#9333ea', missed: '#d97706', skipped: '#6b7280'};
  const totals = runs.minutes.map((minute) => keys.reduce((sum, key) => sum + minute[key], 0));
  const max = Math.max(1, ...totals);
  const innerWidth = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const innerHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const width = innerWidth / runs.minutes.length;
  const chart = svg('svg', {viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, class: 'chart', role: 'img', id: 'runs-chart',
    'aria-label': `Runs per minute over the last hour, ${totals.reduce((a, b) => a + b, 0)} in all`});
  const from = new Date(runs.from);
  runs.minutes.forEach((minute, index) => {
    let y = MARGIN.top + innerHeight;
    for (const key of keys) {
      if (!minute[key]) continue;
      const height = (minute[key] / max) * innerHeight;
      y -= height;
      const bar = svg('rect', {x: MARGIN.left + index * width + 0.5, y, width: Math.max(1, width - 1), height, fill: colours[key]});
      const at = new Date(from.getTime() + index * 60000);
      bar.append(svg('title', {}, `${pad(at.getHours())}:${pad(at.getMinutes())} — ${minute[key]} ${key}`));
      chart.append(bar);
    }
  });
  axes(chart, max, minuteLabels(from, runs.minutes.length, width), '');
  return chart;
}

function minuteLabels(from, count, width) {
  const labels = [];
  for (let index = 0; index < count; index += 10) {
    const at = new Date(from.getTime() + index * 60000);
    labels.push([MARGIN.left + index * width, `${pad(at.getHours())}:${pad(at.getMinutes())}`]);
  }
  return labels;
}

function latenessChart(runs) {
  const values = runs.minutes.flatMap((minute) => [minute.lateness_p50_ms, minute.lateness_p99_ms]).filter((value) => value !== null);
  const max = Math.max(1, ...values);
  const innerWidth = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const innerHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const width = innerWidth / runs.minutes.length;
  const chart = svg('svg', {viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, class: 'chart', role: 'img', id: 'lateness-chart',
    'aria-label': `Lateness percentiles per minute; highest p99 ${formatMs(Math.max(0, ...values))}`});
  for (const [key, colour] of [['lateness_p50_ms', '#2563eb'], ['lateness_p99_ms', '#db2777']]) {
    runs.minutes.forEach((minute, index) => {
      if (minute[key] === null) return;
      const x = MARGIN.left + index * width + width / 2;
      const y = MARGIN.top + innerHeight - (minute[key] / max) * innerHeight;
      const dot = svg('circle', {cx: x, cy: y, r: 2.5, fill: colour});
      dot.append(svg('title', {}, `${key === 'lateness_p50_ms' ? 'p50' : 'p99'} ${formatMs(minute[key])}`));
      chart.append(dot);
    });
  }
  axes(chart, max, minuteLabels(new Date(runs.from), runs.minutes.length, width), ' ms');
  return chart;
}

// ---------- start ----------

async function start() {
  try {
    await loadAccess();
  } catch (error) {
    if (error.status === 401) return; // the token dialog is open; start() runs again
    document.getElementById('main').replaceChildren(h('p', {class: 'error', role: 'alert'}, `Could not reach the API: ${error.message}`));
    return;
  }
  refreshSchedulerState();
  refreshFailedCount();
  followEvents();
  route();
}

window.addEventListener('hashchange', route);
document.addEventListener('keydown', (event) => {
  // "/" jumps to the search box, as on many dashboards.
  if (event.key === '/' && !['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName)) {
    const search = document.getElementById('job-search');
    if (search) { event.preventDefault(); search.focus(); }
  }
});
setupTokenDialog();
start();
