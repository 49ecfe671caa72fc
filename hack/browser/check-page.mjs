// Drives Debian's headless Chromium (/usr/bin/chromium) through pages of
// the controller's status page, for tests/observability.rs:
//
//   node hack/browser/check-page.mjs OUT_DIR STEP...
//
// STEP is `goto:URL` or `click:LINK TEXT` (follows the link whose text is
// exactly LINK TEXT). After each step it saves OUT_DIR/<n>.png (the full
// page) and records the page's visible text. It prints one JSON object:
// {pages: [{url, status, title, text, screenshot}], requests: [{url, method,
// headers}], responses: [{url, status, headers, body}]}, every request the
// browser made and every answer, bodies included, so the test can check
// that nothing went elsewhere and nothing secret came back.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [outDir, ...steps] = process.argv.slice(2);
if (!outDir || steps.length === 0) {
  console.error('usage: check-page.mjs OUT_DIR goto:URL|click:TEXT ...');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // The flags this machine kind needs: no sandbox as root, and nothing that
  // reaches for the (closed) network on its own.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const result = { pages: [], requests: [], responses: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('request', (r) => {
    result.requests.push({ url: r.url(), method: r.method(), headers: r.headers() });
  });
  const bodies = [];
  page.on('response', (r) => {
    bodies.push(
      r.text().then(
        (body) => ({ url: r.url(), status: r.status(), headers: r.headers(), body }),
        () => ({ url: r.url(), status: r.status(), headers: r.headers(), body: '' }),
      ),
    );
  });
  let n = 0;
  for (const step of steps) {
    let response;
    if (step.startsWith('goto:')) {
      response = await page.goto(step.slice(5), { waitUntil: 'load' });
    } else if (step.startsWith('click:')) {
      const text = step.slice(6);
      [response] = await Promise.all([
        page.waitForNavigation({ waitUntil: 'load' }),
        page.getByRole('link', { name: text, exact: true }).first().click(),
      ]);
    } else {
      throw new Error(`unknown step ${step}`);
    }
    n += 1;
    const screenshot = join(outDir, `${n}.png`);
    await page.screenshot({ path: screenshot, fullPage: true });
    result.pages.push({
      url: page.url(),
      status: response ? response.status() : 0,
      title: await page.title(),
      text: await page.innerText('body'),
      screenshot,
    });
  }
  result.responses = await Promise.all(bodies);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result));
