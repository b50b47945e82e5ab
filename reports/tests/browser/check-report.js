// Opens one ota-report page in Debian's chromium (headless, by path: no
// browser download) through playwright-core, and prints what a reader sees as
// one JSON object on stdout: console messages and page errors, every request
// the page made and every failed one, the state x fault matrix as shown, each
// failure's timeline and reproduce command, the 95% bounds, each inline SVG
// plot's marks and drawn size, and the block-level strips' cells as drawn.
// It saves a full-page screenshot.
// reports/tests/browser/test_browser.py runs it and checks the figures
// against the run database.
//
//   node check-report.js URL SCREENSHOT.png [--browser /usr/bin/chromium]
'use strict';
const { chromium } = require('playwright-core');

async function main() {
  const [url, shot] = process.argv.slice(2, 4);
  const bi = process.argv.indexOf('--browser');
  const executablePath = bi > 0 ? process.argv[bi + 1] : '/usr/bin/chromium';
  if (!url || !shot) {
    console.error('usage: node check-report.js URL SCREENSHOT.png [--browser PATH]');
    process.exit(2);
  }
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    // a CI container runs as root: chromium's sandbox needs user namespaces
    args: ['--no-sandbox', '--disable-gpu'],
  });
  const out = { console: [], pageErrors: [], requests: [], failed: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => out.console.push({ type: m.type(), text: m.text() }));
    page.on('pageerror', (err) => out.pageErrors.push(String(err)));
    page.on('request', (r) => out.requests.push(r.url()));
    page.on('requestfailed', (r) => out.failed.push({ url: r.url(), error: r.failure() && r.failure().errorText }));
    const resp = await page.goto(url, { waitUntil: 'load' });
    out.status = resp ? resp.status() : null;
    Object.assign(out, await page.evaluate(collect));
    await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

// Runs in the page: what is shown, read from the rendered DOM.
function collect() {
  const text = (el) => (el ? el.innerText.trim() : null);
  const r = { title: document.title };
  // the matrix: the table after the heading "State × fault matrix"
  const h = [...document.querySelectorAll('h2')].find((x) => /State . fault matrix/.test(x.textContent));
  let t = h && h.nextElementSibling;
  while (t && t.tagName !== 'TABLE') t = t.nextElementSibling;
  if (t) {
    const rows = [...t.rows];
    const faults = [...rows[0].cells].slice(1).map(text);
    r.matrix = { faults, rows: rows.slice(1).map((tr) => ({ row: text(tr.cells[0]), cells: [...tr.cells].slice(1).map((c) => ({ text: text(c), visible: c.getBoundingClientRect().width > 0 })) })) };
  }
  // failures: each block's reproduce command and timeline
  r.failures = [...document.querySelectorAll('div.failure')].map((d) => {
    const svg = d.querySelector('svg[aria-label="agent state timeline"]');
    const box = svg ? svg.getBoundingClientRect() : null;
    return {
      id: d.id,
      heading: text(d.querySelector('h3')),
      reproduce: text(d.querySelector('pre.repro code')),
      timelineSegments: svg ? svg.querySelectorAll('rect').length : 0,
      timelineSize: box ? [box.width, box.height] : null,
      stateRows: d.querySelectorAll('details table tr').length - 1,
    };
  });
  // the 95% bounds: the per-fault table's last column and the header's line
  const rh = [...document.querySelectorAll('h2')].find((x) => /Failure rate per fault kind/.test(x.textContent));
  const rt = rh && rh.nextElementSibling;
  if (rt && rt.tagName === 'TABLE') {
    const head = [...rt.rows[0].cells].map(text);
    const bi = head.indexOf('95% upper bound');
    r.bounds = { header: head, rows: [...rt.rows].slice(1).map((tr) => ({ fault: text(tr.cells[0]), bound: bi >= 0 ? text(tr.cells[bi]) : null })) };
  }
  const kv = [...document.querySelectorAll('table.kv tr')].find((tr) => text(tr.cells[0]) === 'Failure rate');
  r.overallBound = kv ? text(kv.cells[1]) : null;
  // every inline SVG plot: its marks and its drawn size
  r.svgs = [...document.querySelectorAll('svg[aria-label]')].map((s) => {
    const b = s.getBoundingClientRect();
    let bbox = null;
    try { const x = s.getBBox(); bbox = [x.width, x.height]; } catch (e) { /* not rendered */ }
    return {
      label: s.getAttribute('aria-label'),
      size: [b.width, b.height],
      bbox,
      marks: s.querySelectorAll('rect,circle,polygon,path,polyline,line').length,
      data: [...s.querySelectorAll('[data-ms],[data-start-ms],[data-key]')].map((m) => ({ ...m.dataset })),
    };
  });
  // block-level crash states: each update's strip, its cells, segments and boot marks as drawn
  const box = (el) => { const b = el.getBoundingClientRect(); return [b.width, b.height]; };
  r.blockStrips = [...document.querySelectorAll('svg.blk-strip')].map((s) => ({
    update: s.dataset.update,
    size: box(s),
    cells: [...s.querySelectorAll('rect.blk-cell')].map((c) => ({ ...c.dataset, size: box(c), linked: c.parentNode.tagName.toLowerCase() === 'a' })),
    during: [...s.querySelectorAll('rect.blk-during')].map((c) => ({ ...c.dataset, size: box(c) })),
    boots: [...s.querySelectorAll('.blk-boot')].map((c) => ({ ...c.dataset, size: box(c) })),
  }));
  r.blockFailures = [...document.querySelectorAll('div.blk-failure')].map((d) => ({
    id: d.id, reproduce: text(d.querySelector('pre.repro code')),
  }));
  r.gaps = text(document.querySelector('div.gaps'));
  r.externalRefs = [...document.querySelectorAll('[src],[href],link,script')]
    .map((x) => x.getAttribute('src') || x.getAttribute('href') || x.tagName)
    .filter((u) => !String(u).startsWith('#'));
  return r;
}

main().catch((err) => {
  console.error(String(err && err.stack || err));
  process.exit(1);
});
