// Drives a live host's dashboard in the system's headless Chromium:
// connect with the token and wait until the "Event triggers" table shows
// APP's trigger TRIGGER connected, with INVOCATIONS invocations of which
// FAILURES failed. Run by tests/all/triggers.rs; exits non-zero (saying
// why) otherwise.
//
// Environment: ADMIN_URL, TOKEN, APP, TRIGGER, INVOCATIONS, FAILURES,
// SHOTS (a directory for a screenshot), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const { ADMIN_URL, TOKEN, APP, TRIGGER, INVOCATIONS, FAILURES, SHOTS } = process.env;
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
  await page.locator("#token").fill(TOKEN);
  await page.keyboard.press("Enter");
  const row = page.locator(`#triggers tr[data-trigger="${APP}/${TRIGGER}"]`);
  for (const [field, want] of [["connected", "connected"], ["invocations", INVOCATIONS], ["failures", FAILURES]]) {
    await row.locator(`[data-field="${field}"]`).filter({ hasText: new RegExp(`^${want}$`) })
      .waitFor({ timeout: 15000 });
  }
  await page.screenshot({ path: `${SHOTS}/triggers.png`, fullPage: true });
  console.log(`the dashboard shows ${APP}/${TRIGGER}: ${INVOCATIONS} invocations, ${FAILURES} failed`);
} catch (error) {
  problems.push(String(error));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
