// The OpenID Connect provider, driven by openid-client (a maintained relying
// party nobody here wrote), against the running stack: discovery, a Clever
// Cloud SSO's hand-off, authorize with PKCE and a nonce, the token grant
// with the ID token's signature checked against the JWKS, userinfo; and
// every refusal: a code used twice, a wrong client secret, a wrong PKCE
// verifier, an unregistered redirect URI, an unknown client, no session
// (with and without prompt=none), and `sub` across accounts. (An expired
// code is refused by storage itself: tests/tests/store.rs.)
//
// Run inside scripts/stack.sh test (make test), which sets E2E_BASE_URL,
// PUBLIC_URL and the OIDC_TEST_* client.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
const oidc = await import(path.join(root, ".tools/npm/node_modules/openid-client/build/index.js"));

const base = process.env.E2E_BASE_URL;
const issuer = process.env.PUBLIC_URL;
const clientId = process.env.OIDC_TEST_CLIENT_ID;
const clientSecret = process.env.OIDC_TEST_CLIENT_SECRET;
const redirectUri = process.env.OIDC_TEST_REDIRECT_URI;

async function provision(plan) {
  const auth = Buffer.from(`${process.env.ADDON_ID}:${process.env.ADDON_PASSWORD}`).toString("base64");
  const addonId = `addon_oidc_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const response = await fetch(`${base}/clevercloud/resources`, {
    method: "POST",
    headers: { authorization: `Basic ${auth}`, "content-type": "application/json" },
    body: JSON.stringify({ addon_id: addonId, plan, region: "EU" }),
  });
  assert.equal(response.status, 200);
  return { id: (await response.json()).id, addonId };
}

// A Clever Cloud SSO (signed as the console signs it): the session cookie,
// and where the browser is sent next.
async function signIn(resourceId, email, userId) {
  const binary = path.join(root, "target/debug/sso_fixture");
  const { clevercloud_form: form } = JSON.parse(execFileSync(binary, [resourceId, email, userId], { encoding: "utf8" }));
  const response = await fetch(`${base}/clevercloud/sso/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
    redirect: "manual",
  });
  assert.equal(response.status, 303);
  const cookie = response.headers.getSetCookie().map((c) => c.split(";")[0]).find((c) => c.startsWith("__Host-addon_session="));
  assert.ok(cookie, "a session cookie");
  return { cookie, location: response.headers.get("location") };
}

async function discover(secret = clientSecret, authentication = oidc.ClientSecretPost) {
  // Plain http is this stack's loopback address; a deployment is https.
  const config = await oidc.discovery(new URL(issuer), clientId, secret, authentication(secret), {
    execute: [oidc.allowInsecureRequests],
  });
  // Verify the ID token's signature against the JWKS too (openid-client
  // trusts the TLS of the token endpoint unless asked).
  oidc.enableNonRepudiationChecks(config);
  return config;
}

async function authorize(config, cookie, parameters = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: "openid email profile",
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
    ...parameters,
  });
  const response = await fetch(url, { headers: cookie ? { cookie } : {}, redirect: "manual" });
  return { response, verifier, state, nonce, location: response.headers.get("location") };
}

async function grant(config, flow) {
  return oidc.authorizationCodeGrant(config, new URL(flow.location), {
    pkceCodeVerifier: flow.verifier,
    expectedState: flow.state,
    expectedNonce: flow.nonce,
    idTokenExpected: true,
  });
}

async function refusal(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a refusal");
}

test("discovery publishes the provider's endpoints and keys", async () => {
  const response = await fetch(`${base}/.well-known/openid-configuration`);
  assert.equal(response.status, 200);
  const document = await response.json();
  assert.equal(document.issuer, issuer);
  assert.deepEqual(document.code_challenge_methods_supported, ["S256"]);
  assert.ok(document.id_token_signing_alg_values_supported.includes("RS256"));
  assert.equal(document.authorization_response_iss_parameter_supported, true);
  const jwks = await (await fetch(document.jwks_uri)).json();
  assert.ok(jwks.keys.length >= 1 && jwks.keys.every((key) => key.kid && key.kty === "RSA" && !key.d));
});

test("after a Clever Cloud SSO, openid-client signs the customer in: ID token verified, userinfo agrees, the code works once", async () => {
  const resource = await provision("premium");
  const { cookie, location } = await signIn(resource.id, "rp@example.com", "user_rp");
  // The SSO hands the customer to the app registered with an initiate_login_uri.
  const handoff = new URL(location);
  assert.equal(`${handoff.origin}${handoff.pathname}`, `${process.env.E2E_APP_URL}/app/login`);
  assert.equal(handoff.searchParams.get("iss"), issuer);
  assert.equal(handoff.searchParams.get("target_link_uri"), `${process.env.E2E_APP_URL}/app/`);

  const config = await discover();
  const flow = await authorize(config, cookie);
  assert.equal(flow.response.status, 302);
  const back = new URL(flow.location);
  assert.equal(`${back.origin}${back.pathname}`, redirectUri);
  assert.equal(back.searchParams.get("iss"), issuer);
  const tokens = await grant(config, flow);
  assert.equal(tokens.token_type.toLowerCase(), "bearer");
  const claims = tokens.claims();
  assert.equal(claims.iss, issuer);
  assert.equal(claims.aud, clientId);
  assert.equal(claims.nonce, flow.nonce);
  assert.equal(claims.email, "rp@example.com");
  assert.equal(claims.email_verified, true);
  assert.equal(claims.resource_id, resource.id);
  assert.equal(claims.platform, "clever_cloud");
  assert.equal(claims.plan, "premium");
  assert.equal(claims.marketplace_id, resource.addonId);
  assert.ok(claims.exp - claims.iat <= 600 && claims.auth_time <= claims.iat);
  const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(userinfo.sub, claims.sub);
  assert.equal(userinfo.resource_id, resource.id);
  assert.equal(userinfo.email, "rp@example.com");

  const reused = await refusal(grant(config, flow));
  assert.equal(reused.error, "invalid_grant");
  assert.equal(reused.status, 400);
});

test("sub is stable per account and differs between accounts", async () => {
  const first = await provision("basic");
  const second = await provision("basic");
  const config = await discover();
  const subOf = async (resourceId, userId) => {
    const { cookie } = await signIn(resourceId, `${userId}@example.com`, userId);
    return (await grant(config, await authorize(config, cookie))).claims().sub;
  };
  const a = await subOf(first.id, "user_sub_a");
  assert.equal(await subOf(second.id, "user_sub_a"), a, "the same account on another resource");
  assert.notEqual(await subOf(first.id, "user_sub_b"), a, "another account");
});

test("client_secret_basic authenticates; a wrong secret is invalid_client", async () => {
  const resource = await provision("basic");
  const { cookie } = await signIn(resource.id, "basic@example.com", "user_basic");
  const basic = await discover(clientSecret, oidc.ClientSecretBasic);
  const flow = await authorize(basic, cookie);
  const wrong = await discover("not-the-secret-0123456789", oidc.ClientSecretBasic);
  const refused = await refusal(grant(wrong, flow));
  assert.equal(refused.status, 401);
  // A 401 with its WWW-Authenticate challenge: openid-client reports the
  // challenge, and the body is RFC 6749's error.
  assert.match(refused.response?.headers.get("www-authenticate") ?? "", /^Basic /);
  assert.equal(refused.error ?? (await refused.response.json()).error, "invalid_client");
  // The refusal spent nothing: the rightful client still redeems the code.
  assert.equal((await grant(basic, flow)).claims().email, "basic@example.com");
});

test("a wrong PKCE verifier is invalid_grant", async () => {
  const resource = await provision("basic");
  const { cookie } = await signIn(resource.id, "pkce@example.com", "user_pkce");
  const config = await discover();
  const flow = await authorize(config, cookie);
  const refused = await refusal(grant(config, { ...flow, verifier: oidc.randomPKCECodeVerifier() }));
  assert.equal(refused.error, "invalid_grant");
});

test("an unregistered redirect URI or an unknown client gets a page, never a redirect", async () => {
  const resource = await provision("basic");
  const { cookie } = await signIn(resource.id, "redirect@example.com", "user_redirect");
  const config = await discover();
  for (const parameters of [{ redirect_uri: "https://evil.example/callback" }, { client_id: "no-such-client" }]) {
    const { response, location } = await authorize(config, cookie, parameters);
    assert.equal(response.status, 400, JSON.stringify(parameters));
    assert.equal(location, null);
    assert.match(response.headers.get("content-type"), /text\/html/);
  }
});

test("without a session: prompt=none answers login_required, otherwise a page says to open the console", async () => {
  const config = await discover();
  const silent = await authorize(config, undefined, { prompt: "none" });
  assert.equal(silent.response.status, 302);
  const back = new URL(silent.location);
  assert.equal(back.searchParams.get("error"), "login_required");
  assert.equal(back.searchParams.get("state"), silent.state);
  assert.equal(back.searchParams.get("iss"), issuer);
  const refused = await refusal(grant(config, silent));
  assert.equal(refused.error, "login_required");

  const page = await authorize(config, undefined);
  assert.equal(page.response.status, 200);
  assert.equal(page.location, null);
  assert.match(await page.response.text(), /open the add-on from your platform/);
});
