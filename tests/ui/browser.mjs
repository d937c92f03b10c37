// Drives kairos's web page in real Chromium against a running daemon (tests/web_ui.rs
// starts it and passes its address in the environment). Each step prints `ok <step>`;
// the last line is a JSON summary the Rust test reads. Any failure exits non-zero.
//
// Environment: KAIROS_UI_URL (http://127.0.0.1:PORT), KAIROS_UI_TOKEN (read-write),
// KAIROS_UI_READ_TOKEN, KAIROS_UI_ARTIFACTS (screenshots go there),
// KAIROS_UI_TOTAL (jobs in the store), KAIROS_CHROMIUM (default /usr/bin/chromium).

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const base = must('KAIROS_UI_URL');
const token = must('KAIROS_UI_TOKEN');
const readToken = must('KAIROS_UI_READ_TOKEN');
const artifacts = must('KAIROS_UI_ARTIFACTS');
const total = Number(must('KAIROS_UI_TOTAL'));
const executablePath = process.env.KAIROS_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 15000;

function must(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

async function step(name, body) {
  const started = Date.now();
  await body();
  console.log(`ok ${name} (${Date.now() - started} ms)`);
}

async function apiGet(path, bearer = token) {
  const response = await fetch(`${base}/api/v1${path}`, {headers: {Authorization: `Bearer ${bearer}`}});
  return {status: response.status, json: await response.json().catch(() => null)};
}

/**
 * Runs axe-core's WCAG 2 A/AA rules (contrast, names, labels, landmarks) on the page
 * as it is; returns the serious and critical violations.
 */
async function accessibilityProblems(page) {
  await page.evaluate(axeSource);
  const results = await page.evaluate(() => window.axe.run(document, {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']},
  }));
  assert(results.passes.length > 10, `axe ran its rules (${results.passes.length} passed)`);
  return results.violations
    .filter((violation) => ['serious', 'critical'].includes(violation.impact))
    .map((violation) => `${violation.id}: ${violation.help} (${violation.nodes.slice(0, 3).map((node) => node.target.join(' ')).join('; ')})`);
}

/** Opens `hash` in a fresh context and answers the token dialog with `bearer`. */
async function signIn(browser, bearer, hash = '#/jobs', viewport = {width: 1280, height: 900}, options = {}) {
  const context = await browser.newContext({viewport, ...options});
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // Refused requests (401 before the token, the bad preview's 422) are answered in
    // the page; the browser still logs them.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console: ${message.text()}`);
    }
  });
  // A context's first navigation starts a renderer process: on a two-core machine busy
  // with a build that alone can take longer than a step's timeout.
  await page.goto(`${base}/${hash}`, {timeout: 4 * TIMEOUT});
  await page.waitForSelector('#token-dialog[open]');
  await page.fill('#token-input', bearer);
  await page.press('#token-input', 'Enter');
  await page.waitForSelector('#token-dialog:not([open])', {state: 'attached'});
  return {context, page, problems};
}

/** The elements that stick out past the right edge, for the failure message. */
function widest(page) {
  return page.evaluate(() => [...document.querySelectorAll('body *')]
    .filter((element) => (element.getBoundingClientRect().right > window.innerWidth + 1 || element.scrollWidth > element.clientWidth + 1) &&
      !(element.parentElement && element.parentElement.closest('.table-wrap')))
    .slice(0, 5)
    .map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className} (${Math.round(element.getBoundingClientRect().right)}px)`)
    .join(', '));
}

mkdirSync(artifacts, {recursive: true});
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const summary = {first_page_ms: []};
try {
  const {page, problems} = await signIn(browser, token);

  await step('the jobs table shows the first page of every job', async () => {
    await page.waitForSelector('#jobs-table tbody tr[data-job-id]');
    const rows = await page.locator('#jobs-table tbody tr[data-job-id]').count();
    assert(rows === 50, `50 rows on the first page, saw ${rows}`);
    const text = await page.textContent('#jobs-summary');
    assert(text.replace(/[,.\s\u202f]/g, '').includes(`of${total}jobs`), `the summary counts ${total} jobs: ${text}`);
    // Sorted by next run: the first row is due no later than the second.
    const times = await page.locator('#jobs-table tbody tr[data-job-id] td.when').allTextContents();
    assert(times.length > 2, 'next-run cells');
  });

  await step('the first page renders fast with the token in the session', async () => {
    for (let attempt = 0; attempt < 3; attempt++) {
      await page.reload();
      await page.waitForSelector('body[data-jobs-rendered-at]');
      const at = Number(await page.getAttribute('body', 'data-jobs-rendered-at'));
      summary.first_page_ms.push(at);
    }
    await page.waitForSelector('body[data-live="on"]');
    await page.screenshot({path: join(artifacts, 'jobs-table.png'), fullPage: false});
  });

  await step('"/" focuses the search box, and the next page is one click away', async () => {
    await page.keyboard.press('/');
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    assert(focused === 'job-search', `search focused, saw ${focused}`);
    await page.click('#next-page');
    await page.waitForFunction(() => document.querySelector('#jobs-summary').textContent.startsWith('51'));
    await page.click('#previous-page');
    await page.waitForFunction(() => document.querySelector('#jobs-summary').textContent.startsWith('1–'));
  });

  await step('search and filters find a job', async () => {
    await page.fill('#job-search', 'target-job');
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#jobs-table tbody tr[data-job-id]');
      return rows.length === 1 && rows[0].dataset.jobId === 'target-job';
    });
    await page.selectOption('#state-filter', 'paused');
    await page.waitForFunction(() => document.querySelectorAll('#jobs-table tbody tr[data-job-id]').length === 0);
    await page.selectOption('#state-filter', '');
    await page.waitForSelector('#jobs-table tbody tr[data-job-id="target-job"]');
  });

  await step('a job can be paused and resumed from its page', async () => {
    await page.click('#jobs-table tbody tr[data-job-id="target-job"] a');
    await page.waitForSelector('.actions[data-state="scheduled"]');
    await page.click('#pause-button');
    await page.waitForSelector('.actions[data-state="paused"]');
    const paused = await apiGet('/jobs/target-job');
    assert(paused.json.paused === true, 'the API says paused');
    await page.click('#pause-button');
    await page.waitForSelector('.actions[data-state="scheduled"]');
    const resumed = await apiGet('/jobs/target-job');
    assert(resumed.json.paused === false, 'the API says resumed');
  });

  await step('run now: the new run arrives live, without reloading', async () => {
    await page.evaluate(() => { window.stillTheSamePage = true; });
    const before = await page.locator('#runs-body tr[data-run-id]').count();
    await page.click('#run-button');
    await page.waitForFunction((count) => document.querySelectorAll('#runs-body tr[data-run-id]').length > count, before);
    const same = await page.evaluate(() => window.stillTheSamePage === true);
    assert(same, 'the page was not reloaded');
    const outcome = await page.textContent('#runs-body tr[data-run-id] .badge');
    assert(outcome.trim() === 'success', `the run succeeded, saw ${outcome}`);
  });

  await step('the next ten fire times are listed', async () => {
    const count = await page.locator('#fire-times li').count();
    assert(count === 10, `ten fire times, saw ${count}`);
  });

  await step('reschedule shows a live preview, refuses a bad trigger, then applies', async () => {
    await page.fill('#reschedule-words', 'cron hour=25');
    await page.waitForSelector('#reschedule-error:not([hidden])');
    const error = await page.textContent('#reschedule-error');
    assert(error.includes('hour') && error.includes('out of range'), `the error names the field: ${error}`);
    await page.fill('#reschedule-words', 'cron hour=4 minute=15');
    await page.waitForFunction(() => {
      const items = [...document.querySelectorAll('#reschedule-preview li')];
      return items.length === 5 && items.every((item) => item.textContent.includes('T04:15:00'));
    });
    await page.waitForSelector('#reschedule-apply:not([disabled])');
    await page.click('#reschedule-apply');
    await page.waitForFunction(() => document.querySelector('#trigger-words').textContent.includes('hour=4'));
    const job = await apiGet('/jobs/target-job');
    assert(job.json.trigger.hour === '4' && job.json.trigger.minute === '15', `rescheduled: ${JSON.stringify(job.json.trigger)}`);
    await page.waitForFunction(() => document.querySelector('#fire-times li').textContent.includes('T04:15:00'));
    // The explanation follows the change: the next run is the new trigger's.
    await page.waitForFunction(() => document.querySelector('#explain-summary').textContent.includes('04:15:00'));
    await page.screenshot({path: join(artifacts, 'job-page.png'), fullPage: true});
  });

  await step('the header counts failed jobs and links to them; the badge says failed', async () => {
    await page.goto(`${base}/#/jobs`);
    await page.waitForSelector('#failed-count:not([hidden])');
    const count = (await page.textContent('#failed-count')).trim();
    assert(count === '1 failed', `the header counts one failed job: ${count}`);
    const overview = await apiGet('/overview');
    assert(overview.json.job_states.failed === 1, `the overview counts it too: ${JSON.stringify(overview.json.job_states)}`);
    // What the header's count costs, against reading it from the overview.
    for (const [key, path] of [['failed_count_ms', '/jobs?state=failed&limit=1'], ['overview_ms', '/overview']]) {
      summary[key] = [];
      for (let attempt = 0; attempt < 5; attempt++) {
        const started = performance.now();
        const answer = await apiGet(path);
        assert(answer.status === 200, `${path}: ${answer.status}`);
        summary[key].push(Math.round(performance.now() - started));
      }
    }
    await page.click('#failed-count');
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#jobs-table tbody tr[data-job-id]');
      return location.hash === '#/jobs?state=failed' && rows.length === 1 && rows[0].dataset.jobId === 'flaky-job';
    });
    assert(await page.inputValue('#state-filter') === 'failed', 'the state filter says failed');
    const badge = await page.textContent('#jobs-table tr[data-job-id="flaky-job"] td.state .badge.state.failed');
    assert(badge.trim() === 'failed', `the failed badge: ${badge}`);
    const states = await page.locator('#state-filter option').allTextContents();
    assert(states.includes('failed') && states.includes('broken'), `the filter offers failed and broken: ${states}`);
  });

  await step('a failed job shows its failure, attempts, options and the explanation, and runs again', async () => {
    await page.click('#jobs-table tr[data-job-id="flaky-job"] a');
    await page.waitForSelector('.actions[data-state="failed"] .badge.failed');
    const failure = await page.textContent('#job-failure');
    assert(failure.includes('failed 2 times'), `the failure names its attempts: ${failure}`);
    assert((await page.textContent('#job-failure-error')).includes('exit'), 'the failure shows the error');
    await page.waitForFunction(() => [...document.querySelectorAll('#runs-body .attempt')].some((cell) => cell.textContent === 'attempt 2/2'));
    const summary = await page.textContent('#explain-summary');
    assert(summary.startsWith('Failed for good') && summary.includes('2 time(s)'), `the explain panel's summary: ${summary}`);
    const recent = await page.locator('#explain-recent tbody tr').count();
    assert(recent === 1, `the explanation's details list the one scheduled time: ${recent}`);
    const options = {
      overlap: await page.textContent('#option-overlap'),
      retry: await page.textContent('#option-retry'),
      max: await page.textContent('#option-max-instances'),
      coalesce: await page.textContent('#option-coalesce'),
      grace: await page.textContent('#option-misfire-grace-time'),
      watch: await page.textContent('#option-expect-success-within'),
    };
    const job = await apiGet('/jobs/flaky-job');
    assert(options.overlap === (job.json.options.overlap ?? 'skip'), `overlap as the API says, skip by default: ${options.overlap}`);
    assert(options.retry.startsWith('2 attempts, waits 100ms'), `the retry policy: ${options.retry}`);
    assert(options.max === String(job.json.options.max_instances), `max instances: ${options.max}`);
    assert(options.coalesce === (job.json.options.coalesce ? 'yes' : 'no'), `coalesce: ${options.coalesce}`);
    assert(options.grace === (job.json.options.misfire_grace_time || 'none'), `misfire grace: ${options.grace}`);
    assert(options.watch === 'none', `expect success within: ${options.watch}`);
    await page.screenshot({path: join(artifacts, 'failed-job.png'), fullPage: true});
    const before = await page.locator('#runs-body tr[data-run-id]').count();
    await page.click('#run-again-button');
    // Two fresh attempts, each arriving live; the job is kept as failed again.
    await page.waitForFunction((count) => document.querySelectorAll('#runs-body tr[data-run-id]').length >= count + 2, before, {timeout: 30000});
    await page.waitForSelector('.actions[data-state="failed"]', {timeout: 30000});
    const runs = await apiGet('/jobs/flaky-job/runs');
    assert(runs.json.runs.length === 4, `four attempts in all: ${runs.json.runs.length}`);
  });

  await step('a pending retry and an overdue job are shown as such', async () => {
    await page.goto(`${base}/#/jobs?q=retrying-job`);
    await page.waitForSelector('#jobs-table tr[data-job-id="retrying-job"] .badge.retrying');
    const retrying = await page.textContent('#jobs-table tr[data-job-id="retrying-job"] .badge.retrying');
    assert(retrying.trim() === 'retrying 2/3', `the list says which attempt comes: ${retrying}`);
    await page.click('#jobs-table tr[data-job-id="retrying-job"] a');
    await page.waitForSelector('#job-retrying');
    const pending = await page.textContent('#job-retrying');
    // The wait is up to an hour (docs/lifecycle.md: the waits are jittered).
    assert(/attempt 2 of 3 is due at .* \(in [\d.]+ (s|min|h)\)/.test(pending), `the pending retry: ${pending}`);
    assert((await page.textContent('#explain-summary')).startsWith('Retrying'), 'the explanation says retrying');
    await page.goto(`${base}/#/jobs?q=overdue-job`);
    await page.waitForSelector('#jobs-table tr[data-job-id="overdue-job"] .badge.overdue');
    await page.click('#jobs-table tr[data-job-id="overdue-job"] a');
    await page.waitForSelector('#job-overdue');
    const overdue = await page.textContent('#job-overdue');
    assert(overdue.includes('no successful run within 1m') && overdue.includes('no success since its watch began'), `overdue: ${overdue}`);
    assert(await page.textContent('#option-expect-success-within') === '1m', 'the option is shown');
  });

  await step('remove asks for confirmation first', async () => {
    await page.goto(`${base}/#/jobs/remove-me`);
    await page.waitForSelector('.actions[data-state]');
    await page.click('#remove-button');
    await page.waitForSelector('#confirm-dialog[open]');
    await page.click('#confirm-dialog button[value="cancel"]');
    assert((await apiGet('/jobs/remove-me')).status === 200, 'cancel keeps the job');
    await page.click('#remove-button');
    await page.click('#confirm-dialog button[value="confirm"]');
    await page.waitForFunction(() => location.hash === '#/jobs');
    assert((await apiGet('/jobs/remove-me')).status === 404, 'confirm removes the job');
  });

  await step('the overview charts the next day and the last hour', async () => {
    await page.goto(`${base}/#/overview`);
    await page.waitForSelector('#timeline rect', {state: 'attached'});
    await page.waitForSelector('#runs-chart');
    await page.waitForSelector('#lateness-chart');
    const cards = await page.textContent('.cards');
    assert(cards.replace(/[,.\s\u202f]/g, '').includes(`Jobs${total - 1}`), `the job count after one removal: ${cards}`);
    await page.screenshot({path: join(artifacts, 'overview.png'), fullPage: true});
  });

  assert(problems.length === 0, `no script errors: ${problems.join('; ')}`);

  await step('a read-only token sees everything and cannot act', async () => {
    const reader = await signIn(browser, readToken, '#/jobs/target-job');
    const readPage = reader.page;
    await readPage.waitForSelector('.actions[data-state]');
    for (const id of ['#pause-button', '#run-button', '#remove-button', '#reschedule-words']) {
      assert(await readPage.isDisabled(id), `${id} is disabled for a read-only token`);
    }
    assert((await readPage.textContent('#access')).includes('read-only'), 'the header says read-only');
    await readPage.waitForSelector('#failed-count:not([hidden])');
    await readPage.goto(`${base}/#/jobs/flaky-job`);
    await readPage.waitForSelector('#run-again-button');
    assert(await readPage.isDisabled('#run-again-button'), 'Run again is disabled for a read-only token');
    await readPage.waitForSelector('#explain-summary');
    await readPage.goto(`${base}/#/jobs/target-job`);
    await readPage.waitForSelector('.actions[data-state]');
    await readPage.waitForSelector('#runs-body tr[data-run-id]');
    const refused = await readPage.evaluate(async (bearer) => {
      const response = await fetch('/api/v1/jobs/target-job/pause', {
        method: 'POST', headers: {Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/json'},
      });
      return response.status;
    }, readToken);
    assert(refused === 403, `the API refuses a read-only write: ${refused}`);
    assert(reader.problems.length === 0, `no script errors: ${reader.problems.join('; ')}`);
    await reader.context.close();
  });

  await step('the pages pass axe-core\'s WCAG A/AA checks and work from the keyboard', async () => {
    // axe is injected as a script, which the page's own policy forbids: this context
    // alone bypasses it.
    const audit = await signIn(browser, token, '#/jobs', {width: 1280, height: 900}, {bypassCSP: true});
    const auditPage = audit.page;
    await auditPage.waitForSelector('#jobs-table tbody tr[data-job-id]');
    const found = {jobs: await accessibilityProblems(auditPage)};
    // Keyboard only: tab to the first job's link and open it with Enter.
    await auditPage.focus('#job-search');
    let reached = null;
    for (let presses = 0; presses < 12 && reached === null; presses++) {
      await auditPage.keyboard.press('Tab');
      reached = await auditPage.evaluate(() => {
        const active = document.activeElement;
        return active && active.closest('#jobs-table tbody') ? active.textContent : null;
      });
    }
    assert(reached !== null, 'a job link is reachable with Tab');
    await auditPage.keyboard.press('Enter');
    await auditPage.waitForSelector('.actions[data-state]');
    assert(await auditPage.evaluate(() => location.hash.startsWith('#/jobs/')), 'Enter opens the job');
    await auditPage.waitForSelector('#runs-body tr');
    found.job = await accessibilityProblems(auditPage);
    await auditPage.goto(`${base}/#/jobs/flaky-job`);
    await auditPage.waitForSelector('#job-failure');
    await auditPage.waitForSelector('#explain-summary');
    await auditPage.waitForSelector('#runs-body tr[data-run-id]');
    found.failedJob = await accessibilityProblems(auditPage);
    await auditPage.goto(`${base}/#/jobs/overdue-job`);
    await auditPage.waitForSelector('#job-overdue');
    await auditPage.waitForSelector('#explain-summary');
    found.overdueJob = await accessibilityProblems(auditPage);
    await auditPage.goto(`${base}/#/jobs?state=failed`);
    await auditPage.waitForSelector('#jobs-table tbody tr[data-job-id="flaky-job"]');
    found.failedJobs = await accessibilityProblems(auditPage);
    await auditPage.goto(`${base}/#/overview`);
    await auditPage.waitForSelector('#runs-chart');
    found.overview = await accessibilityProblems(auditPage);
    const all = Object.entries(found).flatMap(([view, problems]) => problems.map((problem) => `${view}: ${problem}`));
    assert(all.length === 0, `no serious accessibility problems:\n${all.join('\n')}`);
    await audit.context.close();
  });

  await step('at phone width nothing overflows the screen', async () => {
    const phone = await signIn(browser, token, '#/jobs', {width: 390, height: 844});
    await phone.page.waitForSelector('#jobs-table tbody tr[data-job-id]');
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 1, `the jobs page fits (overflow ${overflow}px: ${await widest(phone.page)})`);
    await phone.page.screenshot({path: join(artifacts, 'phone-jobs.png')});
    await phone.page.goto(`${base}/#/jobs/target-job`);
    await phone.page.waitForSelector('.actions[data-state]');
    await phone.page.screenshot({path: join(artifacts, 'phone-job.png'), fullPage: true});
    const jobOverflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(jobOverflow <= 1, `the job page fits (overflow ${jobOverflow}px: ${await widest(phone.page)})`);
    await phone.page.goto(`${base}/#/jobs/flaky-job`);
    await phone.page.waitForSelector('#job-failure');
    await phone.page.waitForSelector('#explain-summary');
    const failedOverflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(failedOverflow <= 1, `the failed job's page fits (overflow ${failedOverflow}px: ${await widest(phone.page)})`);
    await phone.context.close();
  });
} finally {
  await browser.close();
}
const sorted = [...summary.first_page_ms].sort((a, b) => a - b);
summary.first_page_median_ms = sorted[Math.floor(sorted.length / 2)];
for (const key of ['failed_count_ms', 'overview_ms']) {
  const times = [...(summary[key] || [])].sort((a, b) => a - b);
  summary[`${key.replace(/_ms$/, '')}_median_ms`] = times[Math.floor(times.length / 2)];
}
writeFileSync(join(artifacts, 'summary.json'), JSON.stringify(summary, null, 2));
console.log(JSON.stringify(summary));
