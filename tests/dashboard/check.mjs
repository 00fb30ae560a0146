// Drives the dashboard of a running `ferry serve` in the system's headless
// Chromium, as a person would: connect with the token, see the deployed app,
// watch its request count rise while traffic is sent, see an error appear
// after a guest traps, and roll the app back with its button. Run by
// tests/all/dashboard.rs, which starts the host and deploys the app;
// exits non-zero (saying why) on the first thing that is not as it should be.
//
// Environment: ADMIN_URL, APPS_URL, TOKEN, APP (the app's name), SHOTS (a
// directory for screenshots), CHROMIUM (the browser; default
// /usr/bin/chromium).
import { chromium } from "playwright-core";

const { ADMIN_URL, APPS_URL, TOKEN, APP, SHOTS } = process.env;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const problems = [];
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

  await page.goto(`${ADMIN_URL}/dashboard`);
  await page.screenshot({ path: `${SHOTS}/1-login.png`, fullPage: true });

  // The form is reachable and usable from the keyboard alone.
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.id);
  if (focused !== "token") problems.push(`the first Tab focuses ${focused}, not the token field`);
  await page.keyboard.type(TOKEN);
  await page.keyboard.press("Enter");

  const row = page.locator(`#apps tr[data-app="${APP}"]`);
  await row.waitFor({ timeout: 15000 });
  await page.locator("#connection", { hasText: "Live" }).waitFor({ timeout: 15000 });
  const count = async () => Number(await row.locator('[data-field="requests"]').textContent());
  const before = await count();

  // Traffic: the counter rises as it goes.
  for (let i = 0; i < 20; i++) {
    const response = await fetch(`${APPS_URL}/`);
    if (!response.ok) problems.push(`GET / answered ${response.status}`);
  }
  await page.waitForFunction(
    ([app, at]) => {
      const cell = document.querySelector(`#apps tr[data-app="${app}"] [data-field="requests"]`);
      return cell && Number(cell.textContent) >= at;
    },
    [APP, before + 20],
    { timeout: 15000 },
  );

  // A trap: it shows in the recent errors with its cause.
  const trapped = await fetch(`${APPS_URL}/trap`);
  if (trapped.status !== 500) problems.push(`GET /trap answered ${trapped.status}`);
  await page.locator("#errors li", { hasText: "guest trapped" }).first().waitFor({ timeout: 15000 });
  await page.screenshot({ path: `${SHOTS}/2-traffic-and-error.png`, fullPage: true });

  // Rollback: the button serves the previous version again.
  const version = async () => (await row.locator('[data-field="version"]').textContent()).trim();
  const serving = await version();
  await row.getByRole("button", { name: `Roll back ${APP}` }).click();
  await page.locator("#action-status", { hasText: "serves version" }).waitFor({ timeout: 15000 });
  await page.waitForFunction(
    ([app, was]) => {
      const cell = document.querySelector(`#apps tr[data-app="${app}"] [data-field="version"]`);
      return cell && cell.textContent.trim() !== was;
    },
    [APP, serving],
    { timeout: 15000 },
  );
  const now = await version();
  if (Number(now) !== Number(serving) - 1) problems.push(`after rollback version ${now}, not ${serving - 1}`);
  const answer = await (await fetch(`${APPS_URL}/`)).text();
  console.log(`after rollback the app answers: ${answer.trim()}`);
  await page.screenshot({ path: `${SHOTS}/3-rolled-back.png`, fullPage: true });
} catch (error) {
  problems.push(`${error.name}: ${error.message}`);
} finally {
  await browser.close();
}
if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("dashboard ok");
