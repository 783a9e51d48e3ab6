//! Upgrading a deployed stack (docs/upgrading.md): the last release's table,
//! as its stack wrote it (`infra/releases/<version>-items.json`, recorded by
//! scripts/release_items.py), loaded into this version's running stack, which
//! must read every item and carry on where the old one stopped: settle what
//! it still owed (a Clever Cloud add-on's details, a Heroku grant's
//! exchange), then change plans, suspend and resume, sign in and deprovision.

use reqwest::Method;
use serde_json::Value;
use shared::model::{Platform, ResourceStatus};
use std::path::{Path, PathBuf};
use tests::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The newest release older than this version that recorded its table.
fn last_release_items() -> PathBuf {
    let version = |text: &str| -> Vec<u64> { text.split('.').filter_map(|part| part.parse().ok()).collect() };
    let current = version(env!("CARGO_PKG_VERSION"));
    let releases = root().join("infra/releases");
    std::fs::read_dir(&releases)
        .expect("infra/releases")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let release = name.strip_suffix("-items.json")?.to_string();
            (version(&release) < current).then_some((version(&release), releases.join(name)))
        })
        .max()
        .map(|(_, path)| path)
        .expect("a recorded release older than this version")
}

/// Loads the last release's items into the stack's table; the resources among them.
fn load() -> Vec<Value> {
    let path = last_release_items();
    let status = std::process::Command::new(root().join(".tools/moto/bin/python"))
        .arg(root().join("scripts/release_items.py"))
        .arg("load")
        .arg(&path)
        .status()
        .expect("run release_items.py");
    assert!(status.success(), "load {}", path.display());
    let items: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    items
        .into_iter()
        .filter(|item| item["sk"]["S"] == "RESOURCE")
        .collect()
}

fn recorded<'a>(resources: &'a [Value], platform: &str) -> (&'a str, &'a str) {
    let item = resources
        .iter()
        .find(|item| item["platform"]["S"] == platform)
        .unwrap_or_else(|| panic!("the release recorded a {platform} add-on"));
    (
        item["id"]["S"].as_str().unwrap(),
        item["addon_id"]["S"].as_str().unwrap(),
    )
}

async fn scalingo(method: Method, path: &str, body: Option<&str>) -> u16 {
    let mut request = scalingo_authed(method, &format!("/{path}"));
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_last_releases_table_is_served_by_this_version() {
    let resources = load();
    assert_eq!(resources.len(), 3, "one add-on per marketplace");
    for item in &resources {
        let id = item["id"]["S"].as_str().unwrap();
        let resource = stored_resource(id).await;
        assert_eq!(
            resource.status,
            ResourceStatus::Active,
            "{id} reads as it was written"
        );
    }

    // What the old stack still owed is settled by this one.
    let (cc, addon_id) = recorded(&resources, "clever_cloud");
    let (hk, uuid) = recorded(&resources, "heroku");
    for id in [cc, hk] {
        let (code, settled) = provider_json(&["sync", id]);
        assert_eq!(code, 0, "{id}: {settled}");
        assert!(!stored_resource(id).await.sync.is_owed(), "{id}");
    }
    assert_eq!(stored_resource(cc).await.platform, Platform::CleverCloud);
    assert!(
        stored_resource(cc).await.vendor.is_some(),
        "Clever Cloud's details fetched"
    );
    assert!(
        stored_resource(hk).await.heroku.is_some(),
        "the sealed grant, sealed by the old stack, exchanged by this one"
    );

    // Every marketplace's calls on the old add-ons.
    let market = Marketplace::from_env();
    let (status, body) = market.changed_plan(cc, addon_id, "premium").await;
    assert_eq!(status, 200, "{body}");
    let heroku = HerokuApi::from_env();
    let (status, body) = heroku.change_plan(uuid, "premium").await;
    assert_eq!(status, 200, "{body}");
    let (sc, _) = recorded(&resources, "scalingo");
    assert_eq!(scalingo(Method::POST, &format!("{sc}/suspend"), None).await, 200);
    assert_eq!(scalingo(Method::POST, &format!("{sc}/resume"), None).await, 200);
    let (code, link) = provider_json(&[
        "try",
        "sso",
        "--marketplace",
        "scalingo",
        sc,
        "--manifest",
        &stack_var("SCALINGO_MANIFEST"),
    ]);
    assert_eq!(code, 0, "{link}");
    let signed_in = browser().get(link["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(signed_in.status().as_u16(), 303, "a sign-in to an old add-on");

    assert_eq!(market.deprovision(cc).await.status().as_u16(), 200);
    assert_eq!(heroku.deprovision(uuid).await.status().as_u16(), 204);
    assert_eq!(scalingo(Method::DELETE, sc, Some("null")).await, 204);
    for item in &resources {
        let id = item["id"]["S"].as_str().unwrap();
        assert_eq!(
            stored_resource(id).await.status,
            ResourceStatus::Deprovisioned,
            "{id}"
        );
    }
}
