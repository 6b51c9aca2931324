// How long the HQ dashboard takes to load, in headless Chromium: sign in
// once, then `runs` times open the page with the session and time until
// it has drawn (body[data-loaded=true]). Prints one JSON object:
// { runs_ms: [...], median_ms, stores_rows, stores_page }.
//
//   node dashboard_load.mjs <hub base URL> <HQ user> <password> [runs]
import { launch } from "./headless.mjs";

const [base, user, password, runsArg] = process.argv.slice(2);
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
  const sorted = [...report.runs_ms].sort((a, b) => a - b);
  report.median_ms = sorted[Math.floor(sorted.length / 2)];
  report.stores_rows = await page.locator("#stores tbody tr").count();
  report.stores_page = (await page.locator("#fleet-page").textContent()).trim();
} catch (e) {
  report.failed = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(report.failed ? 1 : 0);
