// Single sign-on in a real browser (the headless Chromium that the npm package
// @sparticuz/chromium carries, or $CHROMIUM, driven by playwright-core): a
// page auto-posts a Clever Cloud SSO form to the local stack, and the
// browser lands signed in in the stand-in vendor app (registered with an
// initiate_login_uri: the hand-off, then the OpenID Connect code flow it
// runs with openid-client); the panel is still there, its config values
// shown only when asked; a replayed form must show the refusal page; then a
// Cloud 66 callback, and a Cloud 66 link confirmed on its page.
// Screenshots of the panels land in tests/artifacts/.
//
// Run inside scripts/stack.sh test (make test), which sets E2E_BASE_URL etc.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { pathToFileURL } from "node:url";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
const require = createRequire(import.meta.url);
const { chromium } = require(path.join(root, ".tools/npm/node_modules/playwright-core"));
const bundled = (await import(path.join(root, ".tools/npm/node_modules/@sparticuz/chromium/build/index.js"))).default;

// Chromium accepts Secure cookies over plain http on loopback (localhost and
// 127.0.0.1); the stack's issuer (PUBLIC_URL) is its 127.0.0.1 address, so
// the session the SSO sets is the one the app's authorize request carries.
const base = process.env.E2E_BASE_URL;
const app = process.env.E2E_APP_URL;
const artifacts = path.join(root, "tests/artifacts");
let browser;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({ ...(await browserToLaunch()), headless: true });
});

// This machine's network is closed: a browser that tries to phone home waits
// on refused connections, so background traffic is switched off.
const quiet = ["--disable-background-networking", "--disable-quic", "--no-first-run",
  "--disable-component-update", "--disable-sync"];
// The bundled build's own flags (made for Lambda), less those that do not suit
// this test: two would weaken what it checks (the same-origin policy and
// mixed-content blocking), and in a single process closing one browser
// context closes the whole browser.
const unsuited = new Set(["--disable-web-security", "--allow-running-insecure-content", "--single-process"]);

async function browserToLaunch() {
  if (process.env.CHROMIUM) {
    return { executablePath: process.env.CHROMIUM, args: ["--no-sandbox", "--disable-gpu", ...quiet] };
  }
  return {
    executablePath: await bundled.executablePath(),
    args: [...bundled.args.filter((arg) => !unsuited.has(arg)), ...quiet],
  };
}

after(async () => {
  await browser?.close();
});

async function provision(plan) {
  const auth = Buffer.from(`${process.env.ADDON_ID}:${process.env.ADDON_PASSWORD}`).toString("base64");
  const addonId = `addon_browser_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const response = await fetch(`${base}/clevercloud/resources`, {
    method: "POST",
    headers: { authorization: `Basic ${auth}`, "content-type": "application/json" },
    body: JSON.stringify({ addon_id: addonId, plan, owner_name: "Browser <Test> Org", region: "EU" }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).id;
}

function fixture(resourceId, email) {
  const binary = path.join(root, "target/debug/sso_fixture");
  return JSON.parse(execFileSync(binary, [resourceId, email], { encoding: "utf8" }));
}

// Where Clever Cloud's console posts the form: the stack's printed test
// manifest's sso_url, as given (its host is the one the issuer and the app
// use, so the session cookie it sets is the one every later step carries).
const ssoUrl = JSON.parse(readFileSync(process.env.MANIFEST, "utf8")).api.test.sso_url;

// The page Clever Cloud's console serves: a form that posts itself.
function autoPostPage(form) {
  const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const inputs = Object.entries(form)
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join("");
  return `<!doctype html><form method="post" action="${escape(ssoUrl)}">${inputs}</form>` +
    `<script>document.forms[0].submit()</script>`;
}

test("a Clever Cloud SSO posted to the printed manifest's sso_url lands signed in in the vendor's app; the panel shows values only when asked; a replay is refused", async () => {
  const resourceId = await provision("premium");
  const { clevercloud_form: form } = fixture(resourceId, "browser@example.com");
  const context = await browser.newContext();
  const page = await context.newPage();
  await Promise.all([page.waitForURL(`${app}/app/`), page.setContent(autoPostPage(form))]);
  assert.equal(await page.textContent("#signed-in"), `signed in as browser@example.com for ${resourceId}`);
  assert.equal(await page.textContent("#plan"), "premium");
  await page.screenshot({ path: path.join(artifacts, "oidc-vendor-app.png"), fullPage: true });

  // The panel stays, for the same session.
  const response = await page.goto(`${base}/dashboard`);
  assert.equal(await page.textContent("#plan"), "premium");
  assert.match(await page.textContent("main"), new RegExp(resourceId));
  assert.match(await page.textContent("main"), /Browser <Test> Org/);
  assert.equal(await page.textContent("#marketplace"), "Clever Cloud");
  assert.match(await page.textContent("main"), /provisioned/);
  const html = await response.text();
  const row = page.locator('tr[data-name="ADDON_NAME_TOKEN"]');
  assert.equal(await row.locator(".value").textContent(), "••••••••");
  await row.locator('button[data-action="show"]').click();
  await page.waitForFunction(() => document.querySelector('tr[data-name="ADDON_NAME_TOKEN"] .value').textContent !== "••••••••");
  const value = await row.locator(".value").textContent();
  assert.match(value, /\S{8,}/);
  assert.ok(!html.includes(value), "no value is in the page before it is asked for");
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  await row.locator('button[data-action="copy"]').click();
  await page.waitForFunction(() => document.querySelector('tr[data-name="ADDON_NAME_TOKEN"] button[data-action="copy"]').textContent === "Copied");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), value);
  await page.screenshot({ path: path.join(artifacts, "panel-clevercloud.png"), fullPage: true });

  const replay = await context.newPage();
  const refused = replay.waitForResponse(ssoUrl);
  await replay.setContent(autoPostPage(form));
  assert.equal((await refused).status(), 403);
  await replay.waitForLoadState();
  assert.match(await replay.textContent("main"), /already been used/);
  await replay.screenshot({ path: path.join(artifacts, "sso-replay-refused.png") });
  await context.close();
});

// `provider try sso --open`, as docs/trying.md shows it: a Heroku add-on's
// sign-in, made by the CLI from the stack's Heroku manifest and handed to the
// browser ($BROWSER, here a script that records what it is given), lands
// signed in in the vendor's app.
test("provider try sso --marketplace heroku ID --open signs the browser in to the vendor's app", async () => {
  const uuid = crypto.randomUUID();
  const auth = Buffer.from(`${process.env.HEROKU_ADDON_ID}:${process.env.HEROKU_PASSWORD}`).toString("base64");
  const response = await fetch(`${base}/heroku/resources`, {
    method: "POST",
    headers: {
      authorization: `Basic ${auth}`,
      "content-type": "application/json",
      accept: "application/vnd.heroku-addons+json; version=3",
    },
    body: JSON.stringify({
      uuid, name: "try-db", plan: "premium", region: "amazon-web-services::us-east-1",
      callback_url: `https://api.heroku.com/addons/${uuid}`,
      oauth_grant: { code: `ok-${uuid}`, expires_at: new Date(Date.now() + 300_000).toISOString(), type: "authorization_code" },
      options: {},
    }),
  });
  assert.equal(response.status, 200);
  const resourceId = (await response.json()).id;
  const dir = mkdtempSync(path.join(os.tmpdir(), "try-sso-"));
  const given = path.join(dir, "given");
  const opener = path.join(dir, "browser");
  writeFileSync(opener, `#!/bin/sh\nprintf '%s' "$1" > '${given}'\n`, { mode: 0o755 });
  const printed = execFileSync(
    path.join(root, "target/debug/provider"),
    ["try", "sso", "--marketplace", "heroku", uuid, "--manifest", process.env.HEROKU_MANIFEST,
      "--email", "try@example.com", "--open"],
    { encoding: "utf8", env: { ...process.env, BROWSER: opener } },
  );
  const report = JSON.parse(printed);
  assert.equal(report.opened, true);
  assert.equal(report.method, "POST");
  const pagePath = readFileSync(given, "utf8");
  assert.equal(pagePath, report.page, "the browser was given the page the CLI wrote");
  const context = await browser.newContext();
  const page = await context.newPage();
  await Promise.all([page.waitForURL(`${app}/app/`), page.goto(pathToFileURL(pagePath).href)]);
  assert.equal(await page.textContent("#signed-in"), `signed in as try@example.com for ${resourceId}`);
  await page.screenshot({ path: path.join(artifacts, "try-sso-heroku.png") });
  await context.close();
});

test("a Cloud 66 callback lands in the vendor's app, and on the account's panel", async () => {
  const email = `c66-${Date.now()}@example.com`;
  const { cloud66_callback: callback } = fixture("res_unused", email);
  const context = await browser.newContext();
  // The browser starts the sign-in (its state cookie lands in this context's
  // jar); Cloud 66 itself is out of reach, so the redirect is not followed.
  const start = await context.request.get(`${base}/cloud66/sso/start`, { maxRedirects: 0 });
  assert.equal(start.status(), 302);
  const page = await context.newPage();
  await page.goto(`${base}${callback}`);
  assert.equal(page.url(), `${app}/app/`);
  assert.match(await page.textContent("#signed-in"), new RegExp(`signed in as ${email}`));
  await page.goto(`${base}/dashboard`);
  assert.equal(await page.textContent("#email"), email);
  assert.equal(await page.textContent("#no-resources"), "No resources yet.");
  await page.screenshot({ path: path.join(artifacts, "panel-cloud66.png"), fullPage: true });

  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/dashboard/signed-out`);
  await page.goto(`${base}/dashboard`);
  assert.equal(new URL(page.url()).pathname, "/dashboard/signed-out", "signed out after logout");
  await context.close();
});

test("a Cloud 66 link is confirmed on its page after the sign-in, and only then posted", async () => {
  const email = `link-${Date.now()}@example.com`;
  const uid = `ok_browser_${Date.now()}`;
  const back = "https://app.cloud66.com/partners/callback?state=browser";
  const { cloud66_callback: callback } = fixture("res_unused", email);
  const context = await browser.newContext();
  const received = async () =>
    (await (await fetch(`${process.env.E2E_PARTNER_URL}/received/${uid}`)).json()).length;
  // Cloud 66 sends the user to the link; it asks for a Cloud 66 sign-in
  // first (Cloud 66 itself is out of reach, so those redirects stop here).
  const link = `${base}/cloud66/link?${new URLSearchParams({ uid, email, callback: back })}`;
  const opened = await context.request.get(link, { maxRedirects: 0 });
  assert.equal(opened.status(), 302);
  assert.equal(opened.headers().location, "/cloud66/sso/start");
  const start = await context.request.get(`${base}/cloud66/sso/start`, { maxRedirects: 0 });
  assert.equal(start.status(), 302);
  // Back from the sign-in: the confirmation page, and still nothing posted.
  const page = await context.newPage();
  await page.goto(`${base}${callback}`);
  assert.equal(new URL(page.url()).pathname, "/cloud66/link/resume");
  assert.equal(await page.textContent("#email"), email);
  assert.equal(await page.textContent("#uid"), uid);
  assert.equal(await page.textContent("#callback-host"), "app.cloud66.com");
  assert.equal(await received(), 0, "nothing posted before the click");
  await page.screenshot({ path: path.join(artifacts, "cloud66-link-confirm.png"), fullPage: true });
  // The click posts the form; the stack links and sends the browser back
  // to Cloud 66, which the page's policy lets the form's redirect reach
  // (the request is made; this machine's closed network then fails it).
  const [posted, , backOnCloud66] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${base}/cloud66/link` && r.request().method() === "POST"),
    page.click("#confirm", { noWaitAfter: true }),
    page.waitForRequest(back),
  ]);
  assert.equal(posted.status(), 302);
  assert.equal(posted.headers().location, back);
  assert.equal(backOnCloud66.isNavigationRequest(), true);
  assert.equal(await received(), 1, "posted once, by the click");
  await context.close();
});
