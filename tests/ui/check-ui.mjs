// Headless-browser check of Sluice's web UI against a running server.
// Run it through `scripts/ui-browser check ...`, which finds chromium and
// puppeteer-core (see `scripts/ui-browser install`).
//
//   check-ui.mjs --base http://127.0.0.1:PORT --job JOB_ID --vertices N --out DIR
//                [--expect-high] [--token TOKEN] [--timeout-seconds 60]
//
// Checks, in order, one line each: (a) the overview lists the job and its link
// leads to the job page; (b) the job graph has exactly N vertices (and, with
// --expect-high, one of them HIGH), screenshot DIR/job.png; (c) the checkpoint
// page shows at least 3 COMPLETED checkpoints, screenshot DIR/checkpoints.png;
// (d) no console error, page error or same-origin HTTP error >= 400 at any
// point. --timeout-seconds bounds each wait. Exit 0 when all pass, 1 at the
// first failure (DIR/failure.png then shows the page), 2 on bad usage.

import { createRequire } from 'node:module';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

// require(), unlike import, honours NODE_PATH, which is how scripts/ui-browser
// points us at target/ui-test-tools/node_modules.
const puppeteer = createRequire(import.meta.url)('puppeteer-core');

const USAGE =
  'usage: check-ui.mjs --base URL --job JOB_ID --vertices N --out DIR ' +
  '[--expect-high] [--token TOKEN] [--timeout-seconds 60]';
const POLL_MS = 250;
// A page that has not refreshed itself for this long gets reloaded by us.
const RELOAD_AFTER_MS = 5000;

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      base: { type: 'string' },
      job: { type: 'string' },
      vertices: { type: 'string' },
      out: { type: 'string' },
      'expect-high': { type: 'boolean', default: false },
      token: { type: 'string' },
      'timeout-seconds': { type: 'string', default: '60' },
    },
  }));
} catch (e) {
  usage(e.message);
}
for (const name of ['base', 'job', 'vertices', 'out']) {
  if (opts[name] === undefined) usage(`--${name} is required`);
}
const vertices = Number(opts.vertices);
const timeoutMs = Number(opts['timeout-seconds']) * 1000;
if (!Number.isInteger(vertices) || vertices < 0) usage('--vertices must be a whole number');
if (!(timeoutMs > 0)) usage('--timeout-seconds must be a positive number');
if (!process.env.CHROMIUM) usage('CHROMIUM (path to the chromium binary) is not set');

const base = new URL(opts.base);
const job = opts.job;
const jobPath = `/ui/jobs/${encodeURIComponent(job)}`;
const outDir = opts.out;

function usage(message) {
  console.error(`check-ui: ${message}\n${USAGE}`);
  process.exit(2);
}

class CheckFailed extends Error {}

function fail(message) {
  throw new CheckFailed(message);
}

function ok(message) {
  console.log(`ok   ${message}`);
}

// Everything the browser complains about, from any page, for check d.
const problems = [];

function watch(page) {
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      const where = msg.location()?.url || page.url();
      problems.push(`console error (${where}): ${msg.text()}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`page error (${page.url()}): ${err.message ?? err}`));
  page.on('response', (resp) => {
    if (resp.status() >= 400 && new URL(resp.url()).origin === base.origin) {
      problems.push(`HTTP ${resp.status()} for ${resp.request().method()} ${resp.url()}`);
    }
  });
  // A same-origin request that got no answer at all is as bad as a 5xx.
  // ERR_ABORTED is only the page reloading itself while something loads.
  page.on('requestfailed', (req) => {
    const error = req.failure()?.errorText ?? '';
    if (new URL(req.url()).origin === base.origin && !error.includes('ERR_ABORTED')) {
      problems.push(`request failed: ${req.method()} ${req.url()}: ${error}`);
    }
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) {
      navigations += 1;
      lastNavigationAt = Date.now();
    }
  });
}
let navigations = 0;
let lastNavigationAt = Date.now();

// The pages refresh themselves, so any DOM read can land mid-navigation, and
// a click can be swallowed by a refresh (its waitForNavigation then times out).
function isNavigationRace(err) {
  if (err instanceof CheckFailed) return false;
  return /Execution context was destroyed|Cannot find context|context is not available|detached|Target closed|Session closed|navigat/i.test(
    String(err?.message ?? err),
  );
}

function checkProblems(label) {
  if (problems.length > 0) {
    fail(
      `d. browser errors (seen during ${label}): ${problems.length} error(s):\n` +
        problems.map((p) => `       ${p}`).join('\n'),
    );
  }
}

// Polls probe() until it returns { ok: true, seen }, re-reading the DOM after
// each refresh. Reloads a page that stopped refreshing itself, and gives up
// at the timeout with the last thing seen.
async function waitFor(page, label, what, probe) {
  const deadline = Date.now() + timeoutMs;
  let seen = 'nothing yet';
  for (;;) {
    checkProblems(label);
    try {
      const result = await probe();
      seen = result.seen;
      if (result.ok) return seen;
    } catch (err) {
      if (!isNavigationRace(err)) throw err;
    }
    if (Date.now() >= deadline) {
      fail(`${label}: ${what} not seen within ${timeoutMs / 1000}s; last saw ${seen}`);
    }
    if (Date.now() - lastNavigationAt > RELOAD_AFTER_MS) {
      await page.reload({ waitUntil: 'domcontentloaded' }).catch((err) => {
        if (!isNavigationRace(err)) throw err;
      });
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function goto(page, label, url) {
  let resp;
  try {
    resp = await page.goto(url, { waitUntil: 'domcontentloaded' });
  } catch (err) {
    fail(`${label}: GET ${url} failed: ${err.message.split('\n')[0]}`);
  }
  const status = resp?.status();
  if (status !== 200) fail(`${label}: GET ${url} answered HTTP ${status}, expected 200`);
}

// A screenshot taken while the page reloads itself could show half a page, so
// take it once the page has loaded and still passes the probe, and retake it
// if a navigation happened meanwhile. Waiting for the load also means every
// resource the page asked for has answered, so check d sees its failures.
async function screenshot(page, label, file, probe) {
  let navigationsBefore;
  const ready = async () => {
    navigationsBefore = navigations;
    const result = await probe();
    const loaded = await page.evaluate(() => document.readyState === 'complete');
    return { ok: result.ok && loaded, seen: loaded ? result.seen : `${result.seen} (still loading)` };
  };
  for (;;) {
    const seen = await waitFor(page, label, 'the loaded page, to screenshot', ready);
    try {
      await page.screenshot({ path: file, fullPage: true });
      if (navigations === navigationsBefore) return seen;
    } catch (err) {
      if (!isNavigationRace(err)) throw err;
    }
  }
}

async function overview(page) {
  const label = 'a. overview';
  await goto(page, label, new URL('/', base).href);
  await waitFor(page, label, `row tr.job[data-job-id="${job}"] with a link to ${jobPath}`, () =>
    page.evaluate(
      (job, jobPath) => {
        if (!document.querySelector('table#jobs')) return { ok: false, seen: 'no table#jobs' };
        const rows = [...document.querySelectorAll('table#jobs tr.job')];
        const row = rows.find((tr) => tr.dataset.jobId === job);
        if (!row) {
          const ids = rows.map((tr) => tr.dataset.jobId).join(', ');
          return { ok: false, seen: `job rows [${ids}]` };
        }
        const link = row.querySelector(`a[href="${jobPath}"]`);
        return { ok: Boolean(link), seen: link ? 'the row and link' : `a row without the link: ${row.innerHTML}` };
      },
      job,
      jobPath,
    ),
  );
  // Click, as a person would. A self-refresh can swallow the click, so try
  // again until we are on the job page.
  await waitFor(page, label, `the job link leading to ${jobPath}`, async () => {
    if (new URL(page.url()).pathname === jobPath) return { ok: true, seen: page.url() };
    const link = await page.$(`table#jobs tr.job a[href="${jobPath}"]`);
    if (!link) return { ok: false, seen: `no link on ${page.url()}` };
    const [resp] = await Promise.all([
      page.waitForNavigation({ waitUntil: 'domcontentloaded', timeout: Math.min(10_000, timeoutMs) }),
      link.click(),
    ]);
    const status = resp?.status();
    if (status !== undefined && status !== 200) fail(`${label}: the job link answered HTTP ${status}`);
    return { ok: new URL(page.url()).pathname === jobPath, seen: page.url() };
  });
  checkProblems(label);
  ok(`${label}: HTTP 200, row for job ${job}, link followed to ${jobPath}`);
}

function readVertices(page) {
  return page.evaluate(() => {
    const svg = document.querySelector('svg#job-graph');
    if (!svg) return null;
    return [...svg.querySelectorAll('g.vertex')].map((g) => ({
      id: g.dataset.vertexId,
      name: g.querySelector('text')?.textContent.trim() ?? '',
      backpressure: g.dataset.backpressure,
    }));
  });
}

function describeVertices(list) {
  if (list === null) return 'no svg#job-graph';
  return `${list.length} [${list.map((v) => `${v.name || v.id}=${v.backpressure}`).join(', ')}]`;
}

async function jobPage(page) {
  const label = 'b. job page';
  const probe = async () => {
    const list = await readVertices(page);
    let good = list !== null && list.length === vertices;
    if (opts['expect-high']) good &&= list.some((v) => v.backpressure === 'HIGH');
    return { ok: good, seen: describeVertices(list) };
  };
  await waitFor(page, label, `exactly ${vertices} g.vertex in svg#job-graph`, async () => {
    const list = await readVertices(page);
    return { ok: list !== null && list.length === vertices, seen: describeVertices(list) };
  });
  if (opts['expect-high']) await waitFor(page, label, 'a vertex with data-backpressure="HIGH"', probe);
  const file = join(outDir, 'job.png');
  const seen = await screenshot(page, label, file, probe);
  checkProblems(label);
  ok(`${label}: vertices ${seen}, screenshot ${file}`);
}

async function checkpointsPage(page) {
  const label = 'c. checkpoints';
  await goto(page, label, new URL(`${jobPath}/checkpoints`, base).href);
  const probe = () =>
    page.evaluate(() => {
      if (!document.querySelector('table#checkpoints')) return { ok: false, seen: 'no table#checkpoints' };
      const counts = {};
      for (const tr of document.querySelectorAll('table#checkpoints tr.checkpoint')) {
        counts[tr.dataset.status] = (counts[tr.dataset.status] ?? 0) + 1;
      }
      const seen = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(', ') || 'no checkpoint rows';
      return { ok: (counts.COMPLETED ?? 0) >= 3, seen };
    });
  await waitFor(page, label, 'at least 3 COMPLETED checkpoint rows', probe);
  const file = join(outDir, 'checkpoints.png');
  const seen = await screenshot(page, label, file, probe);
  checkProblems(label);
  ok(`${label}: ${seen}, screenshot ${file}`);
}

async function main() {
  await mkdir(outDir, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  let page;
  try {
    page = await browser.newPage();
    page.setDefaultTimeout(timeoutMs);
    await page.setViewport({ width: 1280, height: 800 });
    watch(page);
    if (opts.token !== undefined) {
      const url = new URL('/', base);
      url.searchParams.set('token', opts.token);
      await goto(page, 'a. overview (visit with --token)', url.href);
    }
    await overview(page);
    await jobPage(page);
    await checkpointsPage(page);
    // Chromium asks for the icon on its own schedule, perhaps after we have
    // gone; ask once more so a missing one always shows up in check d.
    const icon = await waitFor(page, 'the favicon check', 'an answer for the favicon', async () => {
      const seen = await page.evaluate(async () => {
        const href = document.querySelector('link[rel~="icon"]')?.href ?? new URL('/favicon.ico', location).href;
        return { href, status: (await fetch(href)).status };
      });
      return { ok: true, seen };
    });
    const iconProblem = `HTTP ${icon.status} for GET ${icon.href}`;
    if (icon.status >= 400 && !problems.includes(iconProblem)) problems.push(iconProblem);
    checkProblems('the favicon check');
    ok('d. browser errors: no console errors, page errors or same-origin HTTP errors');
  } catch (err) {
    const message = err instanceof CheckFailed ? err.message : `unexpected error: ${err.stack ?? err}`;
    console.error(`FAIL ${message}`);
    // The page as it was at the failure, for whoever reads the log.
    if (page) {
      const file = join(outDir, 'failure.png');
      await page.screenshot({ path: file, fullPage: true }).then(
        () => console.error(`     page at failure: ${file} (${page.url()})`),
        () => {},
      );
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

await main();
