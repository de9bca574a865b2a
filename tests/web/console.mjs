// Drives the web console in Debian's headless Chromium through playwright-core. Run by the e2e
// test `web::browser_*`, which starts the box and the sessions; the steps come from the argument:
//   replay  - log in as an auditor, find a session by a word printed in it, play it, see the word
//             in the terminal player; the auditor gets no terminate button on a live session
//   live    - log in as an admin, see the running session on the live page, watch its output,
//             terminate it
//   rdp-live - log in as an admin, open a running RDP session, see its video grow as it is
//             written, terminate it
//   video   - log in as an auditor, open a recorded RDP session, play its video in <video> and
//             see it advance (also at 8x)
// Config is JSON in WITNESS_WEB_TEST. Screenshots go to its `artifacts` folder.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const cfg = JSON.parse(process.env.WITNESS_WEB_TEST);
const step = process.argv[2];
mkdirSync(cfg.artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let page;
const shot = async (name) => page.screenshot({ path: `${cfg.artifacts}/${step}-${name}.png`, fullPage: true });

async function login(user, password, viewport) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('console', (m) => console.error('console:', m.text()));
  await page.goto(cfg.base + '/');
  await page.fill('#login input[name=user]', user);
  await page.fill('#login input[name=password]', password);
  await shot('login');
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#logout');
}

try {
  if (step === 'replay') {
    // A laptop screen.
    await login(cfg.auditor[0], cfg.auditor[1], { width: 1366, height: 768 });
    await page.waitForSelector('#sessions-table');
    await shot('history');
    await page.fill('#search', cfg.word);
    await page.click('#filters button[type=submit]');
    await page.waitForSelector('a.hit');
    const rows = await page.locator('tr.session-row').count();
    if (rows !== 1) throw new Error(`search for ${cfg.word} shows ${rows} sessions, expected 1`);
    await shot('search');
    await page.click('a.hit');
    // The hit opens the player at the moment the word was printed.
    await page.waitForSelector('#player .ap-term, #player .ap-terminal', { timeout: 15000 });
    await page.waitForFunction((w) => document.querySelector('#player').innerText.includes(w), cfg.word, { timeout: 15000 });
    await shot('player');
    const speeds = await page.locator('#speed option').allTextContents();
    if (!speeds.includes('32×')) throw new Error(`speeds offered: ${speeds}`);
    if ((await page.locator('#activity span').count()) < 10) throw new Error('no activity timeline');
    // A live session: an auditor sees it, but cannot end it.
    await page.goto(`${cfg.base}/sessions/${cfg.live}`);
    await page.waitForSelector('#facts');
    await shot('auditor-live-session');
    if (await page.locator('#terminate').count()) throw new Error('an auditor was offered terminate');
    console.log(JSON.stringify({ ok: true, step }));
  } else if (step === 'live') {
    // A large monitor.
    await login(cfg.admin[0], cfg.admin[1], { width: 1920, height: 1080 });
    await page.click('#nav-live');
    await page.waitForSelector('#live-table');
    await shot('live-list');
    await page.click(`tr[data-id="${cfg.live}"] a`);
    await page.waitForFunction((w) => { const p = document.querySelector('#live-player'); return p && p.innerText.includes(w); }, cfg.live_word, { timeout: 20000 });
    await shot('live-view');
    page.once('dialog', (d) => d.accept());
    await page.click('#terminate');
    await page.waitForFunction(() => document.querySelector('#terminate-result').innerText.includes('terminated'), null, { timeout: 10000 });
    await shot('terminated');
    console.log(JSON.stringify({ ok: true, step }));
  } else if (step === 'rdp-live') {
    await login(cfg.admin[0], cfg.admin[1], { width: 1920, height: 1080 });
    await page.goto(`${cfg.base}/sessions/${cfg.session}`);
    await page.waitForSelector('#live-video');
    const duration = () => page.evaluate(() => { const v = document.querySelector('#live-video'); return v && v.readyState >= 1 && isFinite(v.duration) ? v.duration : 0; });
    await page.waitForFunction(() => { const v = document.querySelector('#live-video'); return v && v.readyState >= 2 && v.videoWidth > 0; }, null, { timeout: 20000 });
    const first = await duration();
    // The page fetches the growing file again every 4 s: the video gets longer while it runs.
    await page.waitForFunction((d) => { const v = document.querySelector('#live-video'); return v && isFinite(v.duration) && v.duration > d + 2; }, first, { timeout: 20000 });
    const later = await duration();
    await shot('rdp-live-view');
    page.once('dialog', (d) => d.accept());
    await page.click('#terminate');
    await page.waitForFunction(() => document.querySelector('#terminate-result').innerText.includes('terminated'), null, { timeout: 10000 });
    console.log(JSON.stringify({ ok: true, step, first, later }));
  } else if (step === 'video') {
    await login(cfg.auditor[0], cfg.auditor[1], { width: 1366, height: 768 });
    await page.goto(`${cfg.base}/sessions/${cfg.session}`);
    await page.waitForSelector('button.play');
    await shot('rdp-session');
    await page.click('button.play');
    await page.waitForSelector('#video');
    // The browser fetches the MP4 through the box with range requests and plays it.
    await page.waitForFunction(() => { const v = document.querySelector('#video'); return v && v.readyState >= 2; }, null, { timeout: 20000 });
    const first = await page.evaluate(() => document.querySelector('#video').currentTime);
    await page.waitForFunction((t) => document.querySelector('#video').currentTime > t + 1, first, { timeout: 20000 });
    await page.selectOption('#speed', '8');
    const before = await page.evaluate(() => document.querySelector('#video').currentTime);
    await page.waitForTimeout(500);
    const after = await page.evaluate(() => document.querySelector('#video').currentTime);
    const info = await page.evaluate(() => { const v = document.querySelector('#video'); return { w: v.videoWidth, h: v.videoHeight, d: v.duration, rate: v.playbackRate, ended: v.ended }; });
    await shot('rdp-video');
    if (info.w !== cfg.width || info.h !== cfg.height) throw new Error(`video is ${info.w}x${info.h}`);
    if (info.rate !== 8 || (!info.ended && after - before < 1.5)) throw new Error(`at 8x the video moved ${after - before} s in 0.5 s`);
    console.log(JSON.stringify({ ok: true, step, first, before, after, ...info }));
  } else {
    throw new Error(`unknown step ${step}`);
  }
} catch (e) {
  if (page) await shot('failure').catch(() => {});
  console.error(String(e && e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
