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
    // In milliseconds (Clever Cloud sends either): a sign-in is spent by its
    // add-on and timestamp, and the browser tests sign in to one add-on as
    // several users within a second, each a sign-in of its own.
    let timestamp = chrono::Utc::now().timestamp_millis().to_string();
    let clevercloud = CleverCloudSso::new(Secret::new(stack_var("ADDON_SSO_SALT")), 300);
    let signature = clevercloud.signature(resource_id, user_id, email, "", &timestamp);
    let cloud66 = Cloud66Sso::from_lookup(&config::process_env)
        .expect("CLOUD66_* variables")
        .expect("Cloud 66 SSO configured");
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
