// Unassigned work on the POS, for tests/tests/browser_pos_unassigned.rs.
//
//   node pos_unassigned.mjs <agent base URL> <screenshot dir>
//
// Ana (a cashier) signs in: her home screen lists the store's unassigned
// work, late first, and its tiles count it. Mia (a manager) signs in and
// opens the Manager tab: late work nobody holds comes first there.
// Prints `RESULT {errors, seen}`.
import { launch, signIn, watchPosErrors } from "./headless.mjs";

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error("usage: node pos_unassigned.mjs <agent URL> <screenshot dir>");
  process.exit(2);
}
const TIMEOUT = 20_000;

const browser = await launch();
const report = { errors: [], seen: {} };
let code = 0;
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: "en-GB",
    timezoneId: "Europe/Berlin",
    hasTouch: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watchPosErrors(page, report);
  const titles = () => page.locator("#main .task .title").evaluateAll(
    (els) => els.map((e) => e.firstChild.textContent));

  await page.goto(base + "/");
  await signIn(page, "w-1", "1234");
  const late = page.locator(".task.late", { hasText: "Check the cold chain log" });
  await late.waitFor();
  report.seen.home_tab = await page.locator(".tab.on").innerText();
  report.seen.home_titles = await titles();
  report.seen.late_mark = (await late.locator(".late-mark").innerText()).trim();
  report.seen.late_assignee = (await late.locator(".assignee").innerText()).trim();
  report.seen.past_due_tile = Number(await page.locator(".tile.late .num").innerText());
  report.seen.pending_tile = Number(await page.locator("#pending .num").innerText());
  report.seen.nothing_for_you = await page.locator(".empty", { hasText: "Nothing for you" }).count();
  await page.screenshot({ path: `${shotDir}/worker-home.png` });
  await page.locator(".tab.out").click();

  await signIn(page, "m-1", "9999");
  await page.locator(".task", { hasText: "Check the cold chain log" }).waitFor();
  report.seen.manager_home_titles = await titles();
  await page.locator('[data-tab="manager"]').click();
  await page.locator("#new-task-save").waitFor();
  report.seen.manager_assign_rows = await page.locator("[data-assign-row]").evaluateAll(
    (els) => els.map((e) => ({
      title: e.querySelector(".title").firstChild.textContent,
      mark: (e.querySelector(".late-mark") || {}).textContent || null,
    })));
  await page.screenshot({ path: `${shotDir}/manager.png` });
} catch (e) {
  report.errors.push(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(report)}`);
process.exit(code);
