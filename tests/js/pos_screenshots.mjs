// The POS screenshots in docs/, taken in headless Chromium by
// tests/tests/browser_pos_screenshots.rs, which sets up the scene (a store
// in English, a closing list with a priority task, a pos: link and two
// conflicts made on two terminals) and, with UPDATE_SCREENSHOT=1, writes
// the pictures to docs/ instead of target/tmp/.
//
//   node pos_screenshots.mjs <agent base URL> <screenshot dir>
//
// Takes, in English and then in German (each worker switches the
// language for themselves, as on the terminal): the worker's home
// (pos-en-home.png, pos-de-home.png), the task sheet a manager opens
// (pos-task-sheet.png, pos-de-task-sheet.png) and the manager's conflict
// alert (pos-manager-conflict.png, pos-de-manager-conflict.png).
// Prints `RESULT {errors, seen}`.
import { launch, signIn, watchPosErrors } from "./headless.mjs";

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error("usage: node pos_screenshots.mjs <agent URL> <screenshot dir>");
  process.exit(2);
}
const TIMEOUT = 20_000;

const browser = await launch();
const report = { errors: [], seen: { shots: [] } };
let code = 0;
try {
  const context = await browser.newContext({
    // A 15" POS touch screen.
    viewport: { width: 1280, height: 800 },
    locale: "en-GB",
    hasTouch: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watchPosErrors(page, report);
  const shot = async (name) => {
    // Nothing moving on the picture: no toast, the sync line settled.
    await page.locator("#toast").waitFor({ state: "hidden" });
    await page.locator("#sync.online").waitFor();
    await page.screenshot({ path: `${shotDir}/${name}` });
    report.seen.shots.push(name);
  };
  const speak = async (lang, tab) => {
    await page.locator("#lang").selectOption(lang);
    await page.locator(`[data-tab="mine"]`, { hasText: tab }).waitFor();
  };

  await page.goto(base + "/");
  await signIn(page, "w-1", "1234");
  await page.locator("#main .task", { hasText: "Count the till" }).waitFor();
  await speak("en", "My tasks");
  await shot("pos-en-home.png");
  await speak("de", "Meine Aufgaben");
  await shot("pos-de-home.png");
  await speak("en", "My tasks");
  await page.locator(".tab.out").click();

  await signIn(page, "m-1", "9999");
  await page.locator("#banner-conflicts").waitFor();
  for (const [lang, tab, sheet, conflict] of [
    ["en", "My tasks", "pos-task-sheet.png", "pos-manager-conflict.png"],
    ["de", "Meine Aufgaben", "pos-de-task-sheet.png", "pos-de-manager-conflict.png"],
  ]) {
    await speak(lang, tab);
    await page.locator('[data-tab="all"]').click();
    await page.locator("#main .task", { hasText: "Check the price labels" }).click();
    await page.locator("#modal .sheet [data-operation]").waitFor();
    await shot(sheet);
    await page.locator("#modal [data-close]").click();
    await page.locator("#bell").click();
    await page.locator("[data-conflict-alert]").first().waitFor();
    await shot(conflict);
  }
  await speak("en", "My tasks");
} catch (e) {
  report.errors.push(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(report)}`);
process.exit(code);
