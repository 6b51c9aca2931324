// The sync indicator on the store LAN, for tests/tests/browser_pos_lan.rs.
//
//   node pos_lan.mjs <agent base URL> <screenshot dir>
//
// The hub is down and the terminal has two peers on the store's LAN. The
// store speaks German: before anyone signs in the indicator says so in
// German; Ana signs in, picks English for herself, and it says so in
// English. Prints `RESULT {errors, seen}`.
import { launch, signIn, watchPosErrors } from "./headless.mjs";

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error("usage: node pos_lan.mjs <agent URL> <screenshot dir>");
  process.exit(2);
}
const TIMEOUT = 20_000;

const browser = await launch();
const report = { errors: [], seen: {} };
let code = 0;
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: "en-US",
    hasTouch: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watchPosErrors(page, report);
  const sync = page.locator("#sync-text");

  await page.goto(base + "/");
  await sync.filter({ hasText: "Zentrale offline, 2 Kassen im Filialnetz" }).waitFor();
  report.seen.german = (await sync.innerText()).trim();
  report.seen.box_class = await page.locator("#sync").getAttribute("class");
  await page.screenshot({ path: `${shotDir}/pos-lan-de.png` });

  await signIn(page, "w-1", "1234");
  await page.locator("#lang").selectOption("en");
  await sync.filter({ hasText: "HQ offline, 2 terminals on the store network" }).waitFor();
  await page.locator('[data-tab="mine"]', { hasText: "My tasks" }).waitFor();
  report.seen.english = (await sync.innerText()).trim();
  await page.screenshot({ path: `${shotDir}/pos-lan-en.png` });
} catch (e) {
  report.errors.push(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(report)}`);
process.exit(code);
