//! Prints, as JSON, a valid Clever Cloud SSO form for a resource and a valid
//! Cloud 66 SSO callback path, signed with the running stack's secrets, so the
//! browser test can drive real sign-ins.
//!
//! Usage: sso_fixture RESOURCE_ID EMAIL [USER_ID]   (inside scripts/stack.sh test)

use shared::clevercloud::sso::CleverCloudSso;
use shared::cloud66::sso::Cloud66Sso;
use shared::config;
use shared::secret::Secret;
use tests::stack_var;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(resource_id), Some(email)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: sso_fixture RESOURCE_ID EMAIL [USER_ID]");
        std::process::exit(2);
    };
    let user_id = args.get(3).map_or("user_browser", String::as_str);
    // Outside a test stack the salts and Cloud 66's settings are not in the
    // environment: say so, instead of a panic.
    let missing: Vec<&str> = ["ADDON_SSO_SALT", "CLOUD66_PROVIDER", "CLOUD66_PROVIDER_UID"]
        .into_iter()
        .filter(|var| std::env::var(var).map_or(true, |value| value.is_empty()))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "sso_fixture: {} not set: run it inside the test stack (`bash scripts/stack.sh test target/debug/sso_fixture …`); \
             for a sign-in against `make run`, use `provider try sso` (docs/trying.md)",
            missing.join(", ")
        );
        std::process::exit(2);
    }
    // In milliseconds (Clever Cloud sends either): a sign-in is spent by its
    // add-on and timestamp, and the browser tests sign in to one add-on as
    // several users within a second, each a sign-in of its own.
    let timestamp = chrono::Utc::now().timestamp_millis().to_string();
    let clevercloud = CleverCloudSso::new(Secret::new(stack_var("ADDON_SSO_SALT")), 300);
    let signature = clevercloud.signature(resource_id, user_id, email, "", &timestamp);
    let cloud66 = match Cloud66Sso::from_lookup(&config::process_env) {
        Ok(Some(cloud66)) => cloud66,
        Ok(None) => {
            eprintln!("sso_fixture: Cloud 66 sign-in is not configured (CLOUD66_PROVIDER)");
            std::process::exit(2);
        }
        Err(err) => {
            eprintln!("sso_fixture: {err}");
            std::process::exit(2);
        }
    };
    let expires = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let (multipass, cloud66_signature) = cloud66.sign_in_as(email, "Browser Test", &expires);
    let callback = reqwest::Url::parse_with_params(
        "http://localhost/cloud66/sso/callback",
        &[("multipass", multipass), ("signature", cloud66_signature)],
    )
    .expect("callback URL");
    let fixture = serde_json::json!({
        "clevercloud_form": {
            "id": resource_id,
            "timestamp": timestamp,
            "nav-data": "",
            "email": email,
            "user_id": user_id,
            "signature": signature,
        },
        "cloud66_callback": format!("{}?{}", callback.path(), callback.query().unwrap_or_default()),
    });
    println!("{fixture}");
}
