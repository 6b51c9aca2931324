// The task sheet, priority and POS links, for tests/tests/browser_pos_sheet.rs.
//
//   node pos_sheet.mjs <agent base URL> <screenshot dir>
//
// Ana (a cashier) signs in: her rows show priority in words and come by
// due time, the more urgent first within one due time; her task sheet
// offers the status actions and no assigning; she opens a task's
// `pos:price-check` operation (the agent hands it to the POS) and sees a
// task whose operation name is not sane refused in words. Mia (a manager)
// assigns an unassigned task on its sheet, then reassigns it there.
// Prints `RESULT {errors, seen}`.
import { launch, signIn, watchPosErrors } from "./headless.mjs";

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error("usage: node pos_sheet.mjs <agent URL> <screenshot dir>");
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
  const row = (title) => page.locator("#main .task", { hasText: title });
  const sheet = page.locator("#modal .sheet");
  const sheetActions = () => sheet.locator("[data-action]").evaluateAll(
    (els) => els.map((e) => e.dataset.action));
  const closeSheet = async () => {
    await sheet.locator("button", { hasText: "Close" }).click();
    await page.locator("#modal").waitFor({ state: "hidden" });
  };

  await page.goto(base + "/");
  await signIn(page, "w-1", "1234");
  await row("Check the price labels").waitFor();
  report.seen.worker_rows = await page.locator("#main .task").evaluateAll((els) => els.map((e) => ({
    title: e.querySelector(".title").firstChild.textContent,
    priority: (e.querySelector(".prio") || {}).textContent || null,
  })));

  await row("Check the price labels").click();
  await sheet.waitFor();
  report.seen.worker_sheet_actions = await sheetActions();
  report.seen.worker_sheet_assign = await sheet.locator("#sheet-assign-to").count();
  report.seen.worker_sheet_priority = (await sheet.locator(".prio-line").innerText()).trim();
  const op = sheet.locator("[data-operation]");
  report.seen.operation_button = (await op.innerText()).trim();
  await op.click();
  const said = page.locator("#toast:not([hidden]):not(.bad)");
  await said.waitFor();
  report.seen.operation_toast = (await said.innerText()).trim();
  await page.screenshot({ path: `${shotDir}/worker-sheet.png` });
  await closeSheet();

  await row("Fix the scale").click();
  await sheet.waitFor();
  report.seen.refused_buttons = await sheet.locator("[data-operation]").count();
  report.seen.refused_text = (await sheet.locator("[data-operation-refused]").innerText()).trim();
  await closeSheet();
  await page.locator(".tab.out").click();

  await signIn(page, "m-1", "9999");
  await page.locator('[data-tab="all"]').click();
  await row("Restock carrier bags").waitFor();
  await row("Restock carrier bags").click();
  await sheet.waitFor();
  report.seen.manager_sheet_actions = await sheetActions();
  const assign = sheet.locator('[data-action="assign"]');
  report.seen.assign_label = (await assign.innerText()).trim();
  await sheet.locator("#sheet-assign-to").selectOption("worker:w-1");
  await page.screenshot({ path: `${shotDir}/manager-sheet.png` });
  await assign.click();
  await page.locator("#modal").waitFor({ state: "hidden" });
  await row("Restock carrier bags").filter({ hasText: "Ana Lopez" }).waitFor();

  await row("Restock carrier bags").click();
  await sheet.waitFor();
  report.seen.reassign_label = (await assign.innerText()).trim();
  report.seen.reassign_current = await sheet.locator("#sheet-assign-to").inputValue();
  await sheet.locator("#sheet-assign-to").selectOption("worker:w-2");
  await assign.click();
  await page.locator("#modal").waitFor({ state: "hidden" });
  await row("Restock carrier bags").filter({ hasText: "Bo Berg" }).waitFor();
  report.seen.reassigned_row = (await row("Restock carrier bags").locator(".assignee").innerText()).trim();
} catch (e) {
  report.errors.push(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(report)}`);
process.exit(code);
