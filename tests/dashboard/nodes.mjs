// Drives the dashboard of one node of a running Ferry cluster in the
// system's headless Chromium: connect with the token and wait until the
// "Cluster nodes" table lists every node, each serving APP at VERSION.
// Run by tests/all/cluster.rs; exits non-zero (saying why) otherwise.
//
// Environment: ADMIN_URL, TOKEN, NODES (names, comma separated), APP,
// VERSION, SHOTS (a directory for a screenshot), CHROMIUM (default
// /usr/bin/chromium).
import { chromium } from "playwright-core";

const { ADMIN_URL, TOKEN, NODES, APP, VERSION, SHOTS } = process.env;
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
  for (const node of NODES.split(",")) {
    const cell = page.locator(`#nodes tr[data-node="${node}"] [data-field="apps"]`);
    await cell.filter({ hasText: `${APP}@${VERSION}` }).waitFor({ timeout: 15000 });
  }
  await page.screenshot({ path: `${SHOTS}/cluster-nodes.png`, fullPage: true });
  console.log(`the dashboard lists ${NODES}, each serving ${APP}@${VERSION}`);
} catch (error) {
  problems.push(String(error));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
