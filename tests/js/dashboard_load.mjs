// How long the HQ dashboard takes to load, in headless Chromium: sign in
// once, then `runs` times open the page with the session and time until
// it has drawn (body[data-loaded=true]). Prints one JSON object:
// { runs_ms: [...], median_ms, stores_rows, stores_page, rollup_groups }.
// With a directory, it then takes screenshots there of the roll-up by
// store group, a group's stores, a store's lists and past due by list
// (dashboard-rollup.png, dashboard-rollup-stores.png,
// dashboard-rollup-lists.png, dashboard-past-due-by-list.png).
//
//   node dashboard_load.mjs <hub base URL> <HQ user> <password> [runs] [screenshot dir]
import { launch } from "./headless.mjs";

const [base, user, password, runsArg, shots] = process.argv.slice(2);
if (!base || !user || !password) {
  console.error("usage: node dashboard_load.mjs <hub URL> <user> <password> [runs]");
  process.exit(2);
}
const runs = Number(runsArg || 5);
const browser = await launch();
const report = { runs_ms: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  await page.goto(`${base}/`);
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("body[data-loaded=true]").waitFor();
  for (let i = 0; i < runs; i++) {
    const t0 = Date.now();
    await page.goto(`${base}/`);
    await page.locator("body[data-loaded=true]").waitFor();
    report.runs_ms.push(Date.now() - t0);
  }
  // How long each API read of the last load took (server and transfer).
  report.last_api_ms = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/api/"))
    .map((e) => [new URL(e.name).pathname, Math.round(e.duration)])));
  const sorted = [...report.runs_ms].sort((a, b) => a - b);
  report.median_ms = sorted[Math.floor(sorted.length / 2)];
  report.stores_rows = await page.locator("#stores tbody tr").count();
  report.stores_page = (await page.locator("#fleet-page").textContent()).trim();
  const rollup = page.locator("#rollup");
  report.rollup_groups = await rollup.locator("tbody tr[data-group]").count();
  if (shots) {
    const card = (id) => page.locator(`section:has(#${id})`);
    await card("rollup").screenshot({ path: `${shots}/dashboard-rollup.png` });
    await rollup.locator("tbody tr[data-group] th button").first().click();
    await rollup.locator("tbody tr[data-store]").first().waitFor();
    await card("rollup").screenshot({ path: `${shots}/dashboard-rollup-stores.png` });
    await rollup.locator("tbody tr[data-store] th button").first().click();
    await rollup.locator("tbody tr[data-list]").first().waitFor();
    await card("rollup").screenshot({ path: `${shots}/dashboard-rollup-lists.png` });
    const pd = page.locator("#past-due-lists");
    await pd.locator("tbody tr[data-list] button").first().click();
    await pd.locator("tr.expansion tbody tr").first().waitFor();
    await card("past-due-lists").screenshot({ path: `${shots}/dashboard-past-due-by-list.png` });
  }
} catch (e) {
  report.failed = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(report.failed ? 1 : 0);
