/*
 * vid2mp3 web page (DESIGN §7): log in, upload a video with a progress bar,
 * watch the jobs convert (Server-Sent Events read through fetch, polling
 * when the stream is unavailable), play and download the MP3s.
 * No framework, no build step; served with a CSP that forbids inline code.
 */
'use strict';
(() => {
  const TOKEN_KEY = 'vid2mp3.token';
  const PAGE = 20;
  const $ = (id) => document.getElementById(id);
  const el = {
    who: $('who'), whoName: $('who-name'), logout: $('logout'),
    error: $('error'), status: $('status'),
    loginView: $('login-view'), loginForm: $('login-form'), email: $('login-email'),
    password: $('login-password'), loginSubmit: $('login-submit'),
    appView: $('app-view'), quality: $('quality'), drop: $('drop'), file: $('file-input'),
    upBox: $('upload-box'), upLabel: $('upload-label'), upBar: $('upload-progress'),
    upPct: $('upload-pct'), cancel: $('cancel-upload'),
    jobsList: $('jobs'), jobsEmpty: $('jobs-empty'), more: $('more'),
  };

  let token = sessionStorage.getItem(TOKEN_KEY);
  const jobs = new Map(); // job_id -> {job, node, parts}
  let nextBefore = null;
  let live = null; // AbortController of the live-update loop
  let xhr = null; // the upload in flight
  let wantJob = null; // from /#job=ID

  let downloads = false; // the download cookie is set for this token (POST /download-session)
  let downloadsTimer = 0;
  let downloadsDelay = 3000;
  let downloadsError = ''; // the error shown while it fails

  class Gone extends Error {} // the session ended (401 or log out) while waiting
  class HttpError extends Error { // the server answered with an error status
    constructor(message, status) { super(message); this.status = status; }
  }

  const say = (msg) => { el.status.textContent = msg; };
  const sentence = (msg) => String(msg).replace(/[.!?]?$/, '.');
  // What keeps the jobs from updating: null (nothing), else the text shown.
  let trouble = null;
  // false: updates work; true: no answer (network); a string: the server's error.
  const setTrouble = (what) => {
    const text = what === false ? null
      : what === true ? 'The connection to the server was lost. Retrying…'
        : 'The server could not send updates: ' + sentence(what) + ' Retrying…';
    if (text === trouble) return;
    const was = trouble;
    trouble = text;
    say(text || (was ? 'Connected to the server again.' : ''));
  };
  const showError = (msg) => { el.error.textContent = msg || ''; el.error.hidden = !msg; };
  const errorOf = (body, status) =>
    (body && body.error && typeof body.error.message === 'string' && body.error.message) ||
    `The server answered with HTTP status ${status}.`;
  const parse = (text) => { try { return JSON.parse(text); } catch (e) { return null; } };

  // --- session -------------------------------------------------------------
  async function api(path, opts = {}) {
    const t = token;
    const res = await fetch(path, Object.assign({ cache: 'no-store' }, opts,
      { headers: { Authorization: 'Bearer ' + t } }));
    if (token !== t) throw new Gone();
    if (res.status === 401) { expire(); throw new Gone(); }
    const body = parse(await res.text());
    if (!res.ok) throw new HttpError(errorOf(body, res.status), res.status);
    return body;
  }

  function expire() {
    leave();
    showError('Your session has expired. Please log in again.');
  }

  function userName(t) {
    try {
      const p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(p), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes)).username || '';
    } catch (e) { return ''; }
  }

  // POST /download-session: the token becomes an HttpOnly cookie for
  // /download alone, which the players and download links then use (no
  // token in any URL). Until it is set, done jobs show no player or link;
  // a failure other than 401 is shown and retried. One call at a time per token.
  let downloadsCall = null; // {t, p}: the POST in flight for token t
  function openDownloads() {
    if (!token) return Promise.resolve();
    if (downloadsCall && downloadsCall.t === token) return downloadsCall.p;
    const p = postDownloads(token).finally(() => { if (downloadsCall && downloadsCall.p === p) downloadsCall = null; });
    downloadsCall = { t: token, p };
    return p;
  }

  async function postDownloads(t) {
    clearTimeout(downloadsTimer);
    let why;
    try {
      const res = await fetch('/download-session', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { Authorization: 'Bearer ' + t },
      });
      if (token !== t) return;
      if (res.status === 401) { expire(); return; }
      if (res.ok) {
        downloads = true;
        downloadsDelay = 3000;
        if (downloadsError && el.error.textContent === downloadsError) showError('');
        downloadsError = '';
        for (const e of jobs.values()) fill(e);
        return;
      }
      why = errorOf(parse(await res.text()), res.status);
    } catch (e) {
      if (token !== t) return;
      why = 'the server could not be reached';
    }
    downloadsError = 'Players and downloads are unavailable for now: ' + sentence(why) + ' Retrying…';
    showError(downloadsError);
    downloadsTimer = setTimeout(openDownloads, downloadsDelay);
    downloadsDelay = Math.min(downloadsDelay * 2, 60000);
  }

  async function enter() {
    el.loginView.hidden = true;
    el.appView.hidden = false;
    el.who.hidden = false;
    el.whoName.textContent = userName(token);
    const t = token;
    await openDownloads();
    if (token !== t) return; // 401: back at the login form
    try {
      const b = await api('/jobs?limit=' + PAGE);
      b.jobs.forEach(upsert);
      nextBefore = b.next_before;
      render();
      el.jobsEmpty.hidden = jobs.size > 0;
    } catch (e) {
      if (e instanceof Gone) return;
      if (e instanceof TypeError) setTrouble(true); // no answer: the live updates retry
      else showError(e.message);
    }
    reveal(true);
    startLive();
  }

  function leave() {
    if (xhr) xhr.abort();
    if (live) live.abort();
    live = null;
    token = null;
    trouble = null;
    downloads = false;
    downloadsError = '';
    downloadsDelay = 3000;
    clearTimeout(downloadsTimer);
    sessionStorage.removeItem(TOKEN_KEY);
    jobs.clear();
    el.jobsList.replaceChildren();
    nextBefore = null;
    el.more.hidden = true;
    el.appView.hidden = true;
    el.who.hidden = true;
    el.whoName.textContent = '';
    el.loginView.hidden = false;
    showError('');
    say('');
    el.email.focus();
  }

  el.loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError('');
    const email = el.email.value.trim();
    const password = el.password.value;
    if (!email || !password) { showError('Enter your email and password.'); return; }
    el.loginSubmit.disabled = true;
    say('Logging in…');
    try {
      const res = await fetch('/login', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
      const body = parse(await res.text());
      if (!res.ok || !body || !body.token) {
        say('');
        showError(errorOf(body, res.status));
        return;
      }
      token = body.token;
      sessionStorage.setItem(TOKEN_KEY, token);
      el.password.value = '';
      say('Logged in.');
      enter();
    } catch (e) {
      say('');
      showError('The server could not be reached. Check your connection and try again.');
    } finally {
      el.loginSubmit.disabled = false;
    }
  });

  // The cookie is the browser's, not this tab's: a log out or another login
  // in another tab changes it. Set it again for this tab's token when the
  // tab comes back into view.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && token && !el.logout.disabled) openDownloads();
  });

  // Log out: clear the download cookie (best effort), then forget the token.
  el.logout.addEventListener('click', async () => {
    const t = token;
    if (!t || el.logout.disabled) return;
    el.logout.disabled = true;
    say('Logging out…');
    // a POST still in flight would set the cookie again after the DELETE
    if (downloadsCall) await Promise.race([downloadsCall.p, new Promise((r) => setTimeout(r, 5000))]);
    try {
      await fetch('/download-session', {
        method: 'DELETE', credentials: 'same-origin', cache: 'no-store', signal: AbortSignal.timeout(5000),
      });
    } catch (e) { /* the cookie ends with the token anyway */ }
    el.logout.disabled = false;
    if (token === t) leave();
    say('Logged out.');
  });

  // --- upload --------------------------------------------------------------
  (function fillQuality() {
    const add = (parent, value, text) => {
      const o = document.createElement('option');
      o.value = value; o.textContent = text; parent.append(o);
    };
    add(el.quality, '', 'Standard (variable bitrate, V2)');
    const vbr = document.createElement('optgroup');
    vbr.label = 'Variable bitrate';
    for (let q = 0; q <= 9; q++) {
      add(vbr, 'quality:' + q, 'V' + q + (q === 0 ? ' (best, largest)' : q === 9 ? ' (smallest)' : ''));
    }
    const cbr = document.createElement('optgroup');
    cbr.label = 'Constant bitrate';
    for (const b of [320, 256, 224, 192, 160, 128, 112, 96, 80, 64, 56, 48, 40, 32]) {
      add(cbr, 'bitrate:' + b, b + ' kbit/s');
    }
    el.quality.append(vbr, cbr);
  })();

  function setUploadProgress(f) {
    el.upBar.value = f;
    el.upPct.textContent = Math.floor(f * 100) + '%';
  }

  function startUpload(file) {
    if (!token || !file) return;
    if (xhr) { say('An upload is already running.'); return; }
    showError('');
    const form = new FormData();
    const [field, value] = el.quality.value.split(':');
    if (value !== undefined) form.append(field, value);
    form.append('file', file, file.name);

    const t = token;
    const x = new XMLHttpRequest();
    xhr = x;
    x.open('POST', '/upload');
    x.setRequestHeader('Authorization', 'Bearer ' + t);
    x.upload.onprogress = (e) => { if (e.lengthComputable && e.total > 0) setUploadProgress(e.loaded / e.total); };
    x.onload = () => {
      if (token !== t) return;
      if (x.status === 401) { expire(); return; }
      const body = parse(x.responseText);
      if (x.status === 202 && body && body.job_id) {
        say(file.name + ' uploaded. Converting…');
        refreshJob(body.job_id);
      } else {
        say('');
        showError(errorOf(body, x.status));
      }
    };
    x.onerror = () => {
      say('');
      showError('The upload of ' + file.name + ' failed: the connection to the server was lost. Please try again.');
    };
    x.onabort = () => { say('Upload cancelled.'); };
    x.onloadend = () => {
      xhr = null;
      const refocus = document.activeElement === el.cancel;
      el.upBox.hidden = true;
      el.drop.classList.remove('busy');
      setUploadProgress(0);
      el.file.value = '';
      if (refocus) el.file.focus();
    };

    setUploadProgress(0);
    el.upLabel.textContent = 'Uploading ' + file.name;
    el.upBox.hidden = false;
    el.drop.classList.add('busy');
    if (document.activeElement === el.file) el.cancel.focus();
    say('Uploading ' + file.name + '…');
    x.send(form);
  }

  el.file.addEventListener('change', () => startUpload(el.file.files[0]));
  el.cancel.addEventListener('click', () => { if (xhr) xhr.abort(); });
  // Drop anywhere on the page; the drop zone shows where.
  window.addEventListener('dragover', (e) => {
    e.preventDefault();
    if (token) el.drop.classList.add('over');
  });
  window.addEventListener('dragleave', (e) => { if (!e.relatedTarget) el.drop.classList.remove('over'); });
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    el.drop.classList.remove('over');
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) startUpload(f);
  });

  // --- jobs ----------------------------------------------------------------
  const STATUS = { queued: 'Queued', converting: 'Converting', done: 'Done', failed: 'Failed' };
  const running = (j) => j.status === 'queued' || j.status === 'converting';
  const mmss = (s) => { s = Math.round(s); return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0'); };
  const size = (b) => (b < 1048576 ? Math.max(1, Math.round(b / 1024)) + ' KB' : (b / 1048576).toFixed(1) + ' MB');
  const mp3Name = (name) => (String(name || '').replace(/\.[^./\\]*$/, '') || 'audio') + '.mp3';
  const make = (tag, cls, testid) => {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (testid) n.setAttribute('data-testid', testid);
    return n;
  };

  function upsert(j) {
    if (!j || !j.job_id) return;
    let e = jobs.get(j.job_id);
    if (!e) {
      const node = make('li', 'job', 'job');
      node.id = 'job-' + j.job_id;
      node.dataset.jobId = j.job_id;
      node.tabIndex = -1;
      const head = make('div', 'job-head');
      const parts = {
        name: make('span', 'job-name', 'job-name'),
        when: make('time', 'job-when', 'job-when'),
        badge: make('span', 'badge', 'job-status'),
        bar: make('progress', 'job-progress', 'job-progress'),
        meta: make('p', 'job-meta', 'job-meta'),
        fail: make('p', 'job-error', 'job-error'),
        media: make('div', 'job-media'),
      };
      parts.bar.max = 1;
      parts.bar.setAttribute('aria-label', 'Conversion progress');
      const title = make('div', 'job-title');
      title.append(parts.name, parts.when);
      head.append(title, parts.badge);
      node.append(head, parts.bar, parts.meta, parts.fail, parts.media);
      e = { node, parts, job: null };
      jobs.set(j.job_id, e);
    }
    const before = e.job && e.job.status;
    e.job = j;
    fill(e);
    if (before && before !== j.status) { // announce what finished
      if (j.status === 'done') say((j.filename || 'A file') + ' is converted.');
      else if (j.status === 'failed') say((j.filename || 'A file') + ' failed: ' + (j.error || 'the conversion failed.'));
    }
  }

  function fill({ job: j, parts: p }) {
    p.name.textContent = j.filename || '(unnamed file)';
    const created = j.created_at ? new Date(j.created_at) : null;
    if (created && !isNaN(created)) {
      p.when.dateTime = j.created_at;
      p.when.textContent = created.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
    }
    p.badge.textContent = STATUS[j.status] || j.status;
    p.badge.className = 'badge ' + (STATUS[j.status] ? j.status : '');
    p.bar.hidden = !running(j);
    p.bar.value = Math.min(1, Math.max(0, Number(j.progress) || 0));
    p.bar.setAttribute('aria-valuetext', Math.round(p.bar.value * 100) + '%');
    let meta = '';
    if (j.status === 'queued') meta = 'Waiting for a converter…';
    else if (j.status === 'converting') meta = 'Converting: ' + Math.round(p.bar.value * 100) + '%';
    else if (j.status === 'done') {
      meta = [j.duration != null ? mmss(j.duration) : '', j.mp3_bytes != null ? size(j.mp3_bytes) : '']
        .filter(Boolean).join(' · ');
    }
    p.meta.textContent = meta;
    p.meta.hidden = !meta;
    p.fail.textContent = j.status === 'failed' ? (j.error || 'The conversion failed.') : '';
    p.fail.hidden = j.status !== 'failed';
    if (j.status === 'done' && j.mp3_fid && downloads && !p.media.firstChild) {
      const url = '/download?fid=' + encodeURIComponent(j.mp3_fid); // the cookie authorizes it
      const audio = make('audio', 'player', 'player');
      audio.controls = true;
      audio.preload = 'none';
      audio.src = url;
      audio.setAttribute('aria-label', 'Play ' + mp3Name(j.filename));
      const a = make('a', 'button', 'download');
      a.href = url;
      a.download = mp3Name(j.filename);
      a.textContent = 'Download MP3';
      a.setAttribute('aria-label', 'Download MP3: ' + mp3Name(j.filename));
      p.media.append(audio, a);
    }
  }

  const newestFirst = (a, b) =>
    (b.job.created_at || '').localeCompare(a.job.created_at || '') || b.job.job_id.localeCompare(a.job.job_id);

  // Puts the items in order, moving only those out of place (a new job is
  // one insert). The item holding the focus is never moved: moving it would
  // send the focus to <body>; the others move around it instead.
  function render() {
    const list = el.jobsList;
    const order = [...jobs.values()].sort(newestFirst);
    const active = document.activeElement;
    const pinned = active && active !== document.body && list.contains(active)
      ? [...list.children].find((n) => n.contains(active)) : null;
    let ref = list.firstChild;
    for (const { node } of order) {
      if (node === ref) { ref = node.nextSibling; continue; }
      // the items between ref and the pinned one come later: they move after it
      if (node === pinned) { ref = node.nextSibling; continue; }
      list.insertBefore(node, ref);
    }
    el.jobsEmpty.hidden = jobs.size > 0;
    el.more.hidden = !nextBefore;
    reveal(false);
  }

  async function refreshJob(id) {
    try { upsert(await api('/jobs/' + encodeURIComponent(id))); render(); } catch (e) { /* live updates will bring it */ }
  }

  el.more.addEventListener('click', async () => {
    if (!nextBefore) return;
    el.more.disabled = true;
    try {
      const b = await api('/jobs?limit=' + PAGE + '&before=' + encodeURIComponent(nextBefore));
      b.jobs.forEach(upsert);
      nextBefore = b.next_before;
      render();
    } catch (e) {
      if (!(e instanceof Gone)) showError(e.message);
    } finally { el.more.disabled = false; }
  });

  // /#job=ID: after login, scroll to and highlight that job.
  function readHash() {
    const m = /^#job=([\w-]+)$/.exec(location.hash);
    wantJob = m ? m[1] : null;
  }

  async function reveal(fetchIfMissing) {
    if (!wantJob || !token) return;
    const id = wantJob;
    if (!jobs.has(id) && fetchIfMissing) {
      try { upsert(await api('/jobs/' + encodeURIComponent(id))); } catch (e) {
        if (!(e instanceof Gone)) { showError(e.message); wantJob = null; }
        return;
      }
    }
    const e = jobs.get(id);
    if (!e) return;
    wantJob = null;
    if (!e.node.isConnected) render();
    for (const n of el.jobsList.querySelectorAll('.highlight')) n.classList.remove('highlight');
    e.node.classList.add('highlight');
    e.node.scrollIntoView({ block: 'center' });
    e.node.focus({ preventScroll: true });
  }

  window.addEventListener('hashchange', () => { readHash(); reveal(true); });

  // --- live updates: SSE over fetch, polling as the fallback ----------------
  const sleep = (ms, signal) => new Promise((resolve) => {
    const done = () => { clearTimeout(t); signal.removeEventListener('abort', done); resolve(); };
    const t = setTimeout(done, signal.aborted ? 0 : ms);
    signal.addEventListener('abort', done);
  });

  function startLive() {
    if (live) live.abort();
    live = new AbortController();
    liveLoop(live.signal);
    olderLoop(live.signal);
  }

  // The stream and the polls cover the newest PAGE jobs; a job shown past
  // them (Show older files, or pushed down by new ones) that is still
  // queued or converting is asked for alone every ~2 s until it ends.
  async function olderLoop(signal) {
    while (!signal.aborted) {
      await sleep(2000, signal);
      const older = [...jobs.values()].sort(newestFirst).slice(PAGE).filter((e) => running(e.job) && !e.gone);
      let changed = false;
      for (const e of older) {
        if (signal.aborted) return;
        try {
          upsert(await api('/jobs/' + encodeURIComponent(e.job.job_id), { signal }));
          changed = true;
        } catch (err) {
          if (err instanceof Gone) return;
          if (err instanceof HttpError && err.status === 404) e.gone = true; // deleted: stop asking
        }
      }
      if (changed && !signal.aborted) render();
    }
  }

  async function liveLoop(signal) {
    while (!signal.aborted) {
      let wait = 10000;
      try { wait = await stream(signal); } catch (e) { if (e instanceof Gone) return; }
      const until = Date.now() + wait;
      do {
        if (signal.aborted) return;
        try {
          const b = await api('/jobs?limit=' + PAGE, { signal });
          b.jobs.forEach(upsert);
          render();
          setTrouble(false);
        } catch (e) {
          if (e instanceof Gone) return;
          // an HTTP error says what the server wrote; no answer is a lost connection
          if (!signal.aborted) setTrouble(e instanceof HttpError ? e.message : true);
        }
        await sleep(1000, signal);
      } while (Date.now() < until);
    }
  }

  // Reads /jobs/events until it ends; returns how long to poll before
  // trying again (short after a long healthy stream, else ~10 s).
  async function stream(signal) {
    const ctl = new AbortController();
    const stop = () => ctl.abort();
    signal.addEventListener('abort', stop);
    let idle = 0;
    const kick = () => { clearTimeout(idle); idle = setTimeout(stop, 45000); }; // pings every ~15 s
    const started = Date.now();
    let retry = 1000;
    const t = token;
    try {
      kick();
      const res = await fetch('/jobs/events', {
        headers: { Authorization: 'Bearer ' + t, Accept: 'text/event-stream' },
        cache: 'no-store', signal: ctl.signal,
      });
      if (token !== t) throw new Gone();
      if (res.status === 401) { expire(); throw new Gone(); }
      if (res.status !== 200 || !res.body) throw new Error('no event stream');
      setTrouble(false);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let type = '';
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        kick();
        buf += value;
        let i;
        while ((i = buf.search(/[\r\n]/)) >= 0) {
          if (buf[i] === '\r' && i === buf.length - 1) break; // may be half of \r\n
          const line = buf.slice(0, i);
          buf = buf.slice(buf[i] === '\r' && buf[i + 1] === '\n' ? i + 2 : i + 1);
          if (line === '') {
            if (data.length) onEvent(type || 'message', data.join('\n'));
            type = '';
            data = [];
            continue;
          }
          if (line[0] === ':') continue; // comment (ping)
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let v = c < 0 ? '' : line.slice(c + 1);
          if (v[0] === ' ') v = v.slice(1);
          if (field === 'event') type = v;
          else if (field === 'data') data.push(v);
          else if (field === 'retry' && /^\d+$/.test(v)) retry = Number(v);
        }
      }
    } finally {
      clearTimeout(idle);
      signal.removeEventListener('abort', stop);
    }
    return Date.now() - started > 30000 ? retry : 10000;
  }

  function onEvent(type, data) {
    const d = parse(data);
    if (!d) return;
    if (type === 'jobs' && Array.isArray(d.jobs)) d.jobs.forEach(upsert);
    else if (type === 'job') upsert(d);
    else return;
    render();
  }

  // --- start ---------------------------------------------------------------
  readHash();
  if (token) {
    enter();
  } else {
    el.loginView.hidden = false;
  }
})();
