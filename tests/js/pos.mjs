// Drives the POS terminal's web UI in headless Chromium (Debian's system
// package; playwright-core never downloads a browser).
// tests/tests/browser_pos.rs starts the hub and the agents and talks to
// this script over stdio: the script prints `STEP <name>` and waits for a
// line `go` on stdin after the test has done that step (stop or restart the
// hub); at the end it prints `RESULT <json>`.
//
//   node pos.mjs <agent base URL> <worker screenshot.png> <manager screenshot.png>
//
// Steps: sign in as Ana (PIN 1234 on the keypad), see her tasks, STEP
// stop-hub, see "Offline", complete "Count the till" with a note, see one
// change waiting, take "Restock carrier bags", screenshot, STEP start-hub,
// see every change confirmed, sign out, sign in as Mia (manager), see the
// conflicts the other terminal made offline, add a task, screenshot.
import { launch, signIn, watchPosErrors } from "./headless.mjs";
import { createInterface } from "node:readline";

const [base, workerShot, managerShot] = process.argv.slice(2);
if (!base || !workerShot || !managerShot) {
  console.error("usage: node pos.mjs <agent URL> <worker.png> <manager.png>");
  process.exit(2);
}
const TIMEOUT = 20_000;
// The agent reconnects with backoff (up to 30 s between tries).
const RECONNECT = 90_000;

const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
async function step(name) {
  console.log(`STEP ${name}`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== "go") throw new Error(`step ${name}: expected "go", got ${value}`);
}

const browser = await launch();
const report = { errors: [], seen: {} };
let code = 0;
try {
  const context = await browser.newContext({
    // A 15" POS touch screen.
    viewport: { width: 1280, height: 900 },
    locale: "en-GB",
    timezoneId: "Europe/Berlin",
    hasTouch: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watchPosErrors(page, report);
  const sync = page.locator("#sync");

  await page.goto(base + "/");
  // A wrong PIN is refused and the keypad stays.
  await page.locator('[data-worker="w-1"]').click();
  for (const d of "0000") await page.locator(`[data-key="${d}"]`).click();
  await page.locator("#sign-in").click();
  await page.locator(".toast.bad", { hasText: "wrong PIN" }).waitFor();
  report.seen.wrong_pin_refused = true;
  await page.reload();
  await signIn(page, "w-1", "1234");
  report.seen.signed_in_as = (await page.locator("#who").innerText()).trim();
  await page.locator(".task", { hasText: "Count the till" }).waitFor();
  report.seen.my_tasks = await page.locator(".task .title").evaluateAll(
    (els) => els.map((e) => e.firstChild.textContent));
  await page.locator('#sync[data-online="yes"][data-unconfirmed="0"]').waitFor({ timeout: RECONNECT });
  report.seen.pending_tile = await page.locator("#pending .num").innerText();

  await step("stop-hub");
  await page.locator('#sync[data-online="no"]').waitFor({ timeout: RECONNECT });
  report.seen.offline_text = await sync.innerText();

  // Complete a task offline, with a note.
  await page.locator(".task", { hasText: "Count the till" }).click();
  report.seen.detail_link = await page.locator(".sheet .pos-op").innerText();
  report.seen.detail_description = await page.locator(".sheet .desc").innerText();
  await page.locator("#note").fill("Till balanced, 2 x 50 in the safe");
  await page.locator('[data-action="completed"]').click();
  await page.locator('#sync[data-online="no"][data-unconfirmed="1"]').waitFor();
  report.seen.offline_after_complete = await sync.innerText();
  await page.locator(".task", { hasText: "Count the till" }).locator(".chip.completed").waitFor();

  // Take a group task (another terminal takes it too, offline).
  await page.locator(".task", { hasText: "Restock carrier bags" }).click();
  await page.locator('[data-action="claim"]').click();
  await page.locator('#sync[data-online="no"][data-unconfirmed="2"]').waitFor();
  await page.locator(".task", { hasText: "Restock carrier bags" }).locator(".small", { hasText: "Ana" }).waitFor();
  await page.evaluate(() => { document.querySelector("#toast").hidden = true; });
  await page.screenshot({ path: workerShot, fullPage: false });

  await step("start-hub");
  await page.locator('#sync[data-online="yes"][data-unconfirmed="0"]').waitFor({ timeout: RECONNECT });
  report.seen.online_after_restart = await sync.innerText();
  report.seen.confirmed = true;

  // The manager.
  await page.locator(".tab.out").click();
  await signIn(page, "m-1", "9999");
  await page.locator('[data-tab="manager"]').click();
  await page.locator("[data-conflict]").first().waitFor();
  report.seen.conflicts = await page.locator("[data-conflict] h3").evaluateAll(
    (els) => els.map((e) => e.firstChild.textContent));
  // A single-purpose task at the POS, into today's closing list.
  await page.locator("#new-task-list").selectOption({ label: await page.locator("#new-task-list option", { hasText: "Closing" }).innerText() });
  await page.locator("#new-task-title").fill("Check the price of oat milk");
  await page.locator("#new-task-due").fill("23:30");
  await page.locator("#new-task-to").selectOption("worker:w-2");
  await page.locator("#new-task-link").fill("pos:price-check");
  await page.locator("#new-task-save").click();
  await page.locator(".toast", { hasText: "Added" }).waitFor();
  await page.locator('[data-tab="manager"]').click();
  await page.locator("[data-conflict]").first().waitFor();
  await page.evaluate(() => { document.querySelector("#toast").hidden = true; });
  await page.screenshot({ path: managerShot, fullPage: false });
  report.seen.added_task = true;
} catch (e) {
  report.errors.push(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(report)}`);
process.exit(code);
