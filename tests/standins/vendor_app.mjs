// A stand-in for the vendor's own app: an OpenID Connect relying party built
// only on openid-client (a maintained library nobody here wrote), registered
// with the stack as a client with an initiate_login_uri. `make run` and
// `make test` start it (scripts/stack.sh); the browser test signs in
// through it.
//
//   GET /app/login?iss=…&target_link_uri=…   third-party-initiated login (OIDC Core §4):
//                                            starts the code flow (PKCE, state, nonce)
//   GET /app/callback?code=…&state=…&iss=…   redeems the code, verifies the ID token, calls userinfo
//   GET /app/                                "signed in as <email> for <resource_id>"
//   GET /app/received                        every sign-in so far, as JSON (for tests)
//
// Usage: node vendor_app.mjs PORT   with OIDC_ISSUER, OIDC_APP_CLIENT_ID,
// OIDC_APP_CLIENT_SECRET and OIDC_APP_URL (its own base, e.g. http://127.0.0.1:9003).

import http from "node:http";
import path from "node:path";
import { randomBytes } from "node:crypto";

const root = path.resolve(import.meta.dirname, "../..");
const client = await import(path.join(root, ".tools/npm/node_modules/openid-client/build/index.js"));

const port = Number(process.argv[2]);
const issuer = process.env.OIDC_ISSUER;
const appUrl = process.env.OIDC_APP_URL;
const clientId = process.env.OIDC_APP_CLIENT_ID;
const clientSecret = process.env.OIDC_APP_CLIENT_SECRET;
const redirectUri = `${appUrl}/app/callback`;

// Flows in progress (by state) and signed-in app sessions (by cookie).
const flows = new Map();
const sessions = new Map();
const received = [];
let configuration;

async function discover() {
  // Plain http is allowed for the local issuer only (loopback).
  configuration ??= await client.discovery(new URL(issuer), clientId, clientSecret, client.ClientSecretBasic(clientSecret), {
    execute: [client.allowInsecureRequests],
  });
  return configuration;
}

const escape = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(response, status, title, body, headers = {}) {
  response.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", ...headers });
  response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>` +
    `<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`);
}

function cookie(request, name) {
  for (const part of (request.headers.cookie ?? "").split(";")) {
    const [key, value] = part.trim().split("=");
    if (key === name) return value;
  }
  return undefined;
}

async function login(url, response) {
  // The provider says who it is: only ours may start a sign-in here.
  if (url.searchParams.get("iss") !== issuer) {
    return page(response, 400, "Unknown issuer", "<p>This sign-in did not come from the expected provider.</p>");
  }
  const config = await discover();
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  flows.set(state, { codeVerifier, nonce });
  const authorize = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: "openid email profile",
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
    state,
    nonce,
  });
  response.writeHead(302, { location: authorize.href, "cache-control": "no-store" });
  response.end();
}

async function callback(url, response) {
  const state = url.searchParams.get("state");
  const flow = flows.get(state);
  flows.delete(state);
  if (!flow) {
    return page(response, 400, "Sign-in failed", "<p>This sign-in was not started here.</p>");
  }
  try {
    const config = await discover();
    const tokens = await client.authorizationCodeGrant(config, url, {
      pkceCodeVerifier: flow.codeVerifier,
      expectedState: state,
      expectedNonce: flow.nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    const id = randomBytes(16).toString("hex");
    sessions.set(id, { claims, userinfo });
    received.push({ claims, userinfo });
    response.writeHead(303, {
      location: "/app/",
      "set-cookie": `app_session=${id}; Path=/app; HttpOnly; SameSite=Lax`,
      "cache-control": "no-store",
    });
    response.end();
  } catch (error) {
    page(response, 400, "Sign-in failed", `<p id="error">${escape(error.message)}</p>`);
  }
}

function home(request, response) {
  const session = sessions.get(cookie(request, "app_session"));
  if (!session) {
    return page(response, 200, "Vendor app", "<p>Not signed in. Open the add-on from your platform's console.</p>");
  }
  const { claims, userinfo } = session;
  page(response, 200, "Vendor app",
    `<p id="signed-in">signed in as ${escape(userinfo.email ?? claims.sub)} for ${escape(claims.resource_id)}</p>` +
    `<dl><dt>Plan</dt><dd id="plan">${escape(claims.plan)}</dd><dt>Marketplace</dt><dd>${escape(claims.platform)}</dd>` +
    `<dt>Marketplace id</dt><dd>${escape(claims.marketplace_id)}</dd><dt>Subject</dt><dd>${escape(claims.sub)}</dd></dl>`);
}

http.createServer(async (request, response) => {
  const url = new URL(request.url, appUrl);
  try {
    if (request.method !== "GET") {
      response.writeHead(405).end();
    } else if (url.pathname === "/app/login") {
      await login(url, response);
    } else if (url.pathname === "/app/callback") {
      await callback(url, response);
    } else if (url.pathname === "/app/" || url.pathname === "/app") {
      home(request, response);
    } else if (url.pathname === "/app/received") {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify(received));
    } else {
      response.writeHead(404).end();
    }
  } catch (error) {
    console.error(error);
    if (!response.headersSent) page(response, 502, "The provider could not be reached", `<p>${escape(error.message)}</p>`);
  }
}).listen(port, "127.0.0.1", () => console.log(`vendor app on ${appUrl}`));
