// Opens migrator's pages in MLflow's UI as a newcomer would, in Debian's chromium driven by
// playwright-core (no browser download), and prints what a reviewer sees there as JSON.
//   node dashboard.js '{"playwright": DIR, "landing": URL, "parent": URL, "shots": DIR}'
const path = require('path');
const config = JSON.parse(process.argv[2]);
const { chromium } = require(config.playwright);

(async () => {
  const browser = await chromium.launch({ executablePath: config.chromium || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1900, height: 950 } });
  const seen = {};

  // the landing page: no click, the runs ranked
  await page.goto(config.landing);
  await page.waitForSelector('.ag-center-cols-container .ag-row [col-id="metrics.`dev_score`"]', { timeout: 60000 });
  await page.waitForTimeout(1000);
  // in the order shown (ag-grid's DOM keeps another one once columns are reordered)
  seen.columns = await page.$$eval('.ag-header-cell', (cells) =>
    cells
      .map((c) => ({ id: c.getAttribute('col-id'), at: Number(c.getAttribute('aria-colindex')) }))
      .filter((c) => c.id && c.id.includes('.'))
      .sort((a, b) => a.at - b.at)
      .map((c) => c.id)
  );
  seen.rows = await page.$$eval('.ag-center-cols-container .ag-row', (rows) =>
    rows
      .map((r) => {
        const cell = (id) => {
          const c = r.querySelector(`[col-id="${id}"]`);
          return c ? c.innerText.trim() : null;
        };
        return {
          index: Number(r.getAttribute('row-index')),
          run_id: r.getAttribute('row-id'),
          dev_score: cell('metrics.`dev_score`'),
          test_score: cell('metrics.`test_score`'),
          state: cell('tags.`state`'),
          dataset: cell('attributes.`Dataset`'),
        };
      })
      .sort((a, b) => a.index - b.index)
  );
  await page.screenshot({ path: path.join(config.shots, 'ranked-runs.png') });

  // the parent run's page: the verdict, the report and the registered prompt
  await page.goto(config.parent);
  await page.waitForSelector('text=Winner:', { timeout: 60000 });
  await page.waitForTimeout(1000);
  seen.parent_text = await page.innerText('body');
  await page.screenshot({ path: path.join(config.shots, 'parent-run.png') });

  // MLflow's own comparison of two evaluation runs: winner and naive migration, example by example
  if (config.compare) {
    await page.goto(config.compare);
    await page.waitForSelector('text=Comparing', { timeout: 60000 });
    await page.waitForSelector('text=example_id', { timeout: 60000 });
    await page.waitForTimeout(1500);
    seen.compare_text = await page.innerText('body');
    await page.screenshot({ path: path.join(config.shots, 'compare.png') });
  }

  console.log(JSON.stringify(seen));
  await browser.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
