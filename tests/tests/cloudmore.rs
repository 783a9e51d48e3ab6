//! The Cloudmore OAuth 2.0 client against a stand-in token server and API:
//! the documented password grant, token reuse until shortly before expiry,
//! one refresh on a 401, and the four documented 400 errors.

use shared::cloudmore::{CloudmoreClient, CloudmoreConfig, CloudmoreError};
use std::time::Duration;
use tests::fakes::FakeCloudmore;
use tests::unique;

fn client(fake: &FakeCloudmore, url: &str, client_auth: &str) -> CloudmoreClient {
    CloudmoreClient::new(
        CloudmoreConfig::from_lookup(&fake.lookup(url, client_auth))
            .unwrap()
            .unwrap(),
    )
}

#[tokio::test]
async fn the_token_request_is_the_documented_password_grant_in_either_client_auth() {
    for client_auth in ["form", "basic"] {
        let (fake, url) = FakeCloudmore::new(3600, Duration::from_secs(3600), None).spawn();
        client(&fake, &url, client_auth)
            .find_or_create_organization(&unique("org"), None)
            .await
            .unwrap();
        let requests = fake.token_requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].client_auth, client_auth);
        let fields = &requests[0].fields;
        assert_eq!(fields["grant_type"], "password");
        assert_eq!(fields["scope"], "api");
        assert_eq!(fields["username"], fake.username);
        assert_eq!(fields["password"], fake.password);
        if client_auth == "form" {
            assert_eq!(fields["client_id"], "ro.customer.client");
            assert_eq!(fields["client_secret"], fake.client_secret);
        } else {
            assert!(
                !fields.contains_key("client_secret"),
                "Basic keeps the secret out of the form"
            );
        }
    }
}

#[tokio::test]
async fn a_token_is_reused_until_sixty_seconds_before_it_expires() {
    // expires_in 61 s: the client replaces the token after 1 s.
    let (fake, url) = FakeCloudmore::new(61, Duration::from_secs(3600), None).spawn();
    let client = client(&fake, &url, "form");
    for _ in 0..3 {
        client.find_or_create_organization("Org A", None).await.unwrap();
    }
    assert_eq!(
        fake.token_requests.lock().unwrap().len(),
        1,
        "one token for three calls"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client.find_or_create_organization("Org A", None).await.unwrap();
    assert_eq!(
        fake.token_requests.lock().unwrap().len(),
        2,
        "replaced once near expiry"
    );
    assert_eq!(fake.organizations_named("Org A").len(), 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_once() {
    // The server stops accepting tokens after 1 s although it says an hour.
    let (fake, url) = FakeCloudmore::new(3600, Duration::from_secs(1), None).spawn();
    let client = client(&fake, &url, "form");
    client.find_or_create_organization("Org B", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let id = client.find_or_create_organization("Org B", None).await.unwrap();
    assert_eq!(fake.organizations_named("Org B"), [id]);
    assert_eq!(*fake.unauthorized_answers.lock().unwrap(), 1);
    assert_eq!(fake.token_requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn each_documented_400_error_is_typed_with_the_documents_advice_and_no_secret() {
    let cases = [
        (
            "invalid_grant",
            CloudmoreError::InvalidGrant,
            "verify that the username and password are correct",
        ),
        (
            "invalid_scope",
            CloudmoreError::InvalidScope,
            "\"scope\" has the correct value",
        ),
        (
            "unsupported_grant_type",
            CloudmoreError::UnsupportedGrantType,
            "\"grant_type\" has the correct value",
        ),
        (
            "invalid_client",
            CloudmoreError::InvalidClient,
            "\"client_secret\" and \"client_id\" have correct values",
        ),
    ];
    for (code, expected, advice) in cases {
        let (fake, url) = FakeCloudmore::new(3600, Duration::from_secs(3600), Some(code)).spawn();
        let err = client(&fake, &url, "form")
            .find_or_create_organization("Org C", None)
            .await
            .unwrap_err();
        assert_eq!(err, expected);
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(advice), "{shown}");
        assert!(
            !shown.contains(&fake.password) && !shown.contains(&fake.client_secret),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn wrong_credentials_are_reported_as_the_matching_documented_error() {
    let (fake, url) = FakeCloudmore::new(3600, Duration::from_secs(3600), None).spawn();
    let lookup = fake.lookup(&url, "form");
    let wrong_password = move |name: &str| match name {
        "CLOUDMORE_PASSWORD" => Some("not-the-password".to_string()),
        other => lookup(other),
    };
    let config = CloudmoreConfig::from_lookup(&wrong_password).unwrap().unwrap();
    let err = CloudmoreClient::new(config)
        .find_or_create_organization("Org D", None)
        .await
        .unwrap_err();
    assert_eq!(err, CloudmoreError::InvalidGrant);
}

#[test]
fn cloudmore_is_enabled_only_by_its_variables_and_half_a_configuration_is_named() {
    assert!(CloudmoreConfig::from_lookup(&|_: &str| None).unwrap().is_none());
    let half =
        CloudmoreConfig::from_lookup(&|name: &str| (name == "CLOUDMORE_USERNAME").then(|| "u".to_string()));
    let err = half.unwrap_err();
    assert!(err.var.starts_with("CLOUDMORE_"), "{err}");
}

/// A rotation: the secret already holds the new password (and keeps the
/// old one as `CLOUDMORE_PASSWORD_PREVIOUS`) while Cloudmore still has the
/// old one. The organisation is still made, with the previous password, and
/// once Cloudmore has the new one the current password serves first.
#[tokio::test]
async fn during_a_rotation_the_previous_credentials_serve_until_cloudmore_has_the_new_ones() {
    let (fake, url) = FakeCloudmore::new(3600, Duration::from_secs(3600), None).spawn();
    let lookup = fake.lookup(&url, "form");
    let cloudmore_password = fake.password.clone();
    let rotating = move |name: &str| match name {
        "CLOUDMORE_PASSWORD" => Some("the-new-password-not-yet-at-cloudmore".to_string()),
        "CLOUDMORE_PASSWORD_PREVIOUS" => Some(cloudmore_password.clone()),
        other => lookup(other),
    };
    let config = CloudmoreConfig::from_lookup(&rotating).unwrap().unwrap();
    CloudmoreClient::new(config)
        .find_or_create_organization(&unique("org"), None)
        .await
        .unwrap();
    let passwords: Vec<String> = fake
        .token_requests
        .lock()
        .unwrap()
        .iter()
        .map(|request| request.fields["password"].clone())
        .collect();
    assert_eq!(
        passwords,
        [
            "the-new-password-not-yet-at-cloudmore".to_string(),
            fake.password.clone()
        ],
        "the current password first, then the previous one"
    );

    // Without the previous password the same secret is refused, as before.
    let lookup = fake.lookup(&url, "form");
    let new_only = move |name: &str| match name {
        "CLOUDMORE_PASSWORD" => Some("the-new-password-not-yet-at-cloudmore".to_string()),
        other => lookup(other),
    };
    let asked_before = fake.token_requests.lock().unwrap().len();
    let err = CloudmoreClient::new(CloudmoreConfig::from_lookup(&new_only).unwrap().unwrap())
        .find_or_create_organization(&unique("org"), None)
        .await
        .unwrap_err();
    assert_eq!(err, CloudmoreError::InvalidGrant);
    assert_eq!(
        fake.token_requests.lock().unwrap().len(),
        asked_before + 1,
        "without a previous value there is nothing to try again"
    );

    // Only the previous client secret (the password unchanged) falls back too.
    let lookup = fake.lookup(&url, "form");
    let cloudmore_secret = fake.client_secret.clone();
    let secret_rotating = move |name: &str| match name {
        "CLOUDMORE_CLIENT_SECRET" => Some("the-new-secret-not-yet-at-cloudmore".to_string()),
        "CLOUDMORE_CLIENT_SECRET_PREVIOUS" => Some(cloudmore_secret.clone()),
        other => lookup(other),
    };
    CloudmoreClient::new(CloudmoreConfig::from_lookup(&secret_rotating).unwrap().unwrap())
        .find_or_create_organization(&unique("org"), None)
        .await
        .unwrap();
}
