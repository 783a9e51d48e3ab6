//! The sign-ins each marketplace makes, signed as it signs them, for the
//! checks (`provider check`) and for trying (`provider try sso`): one builder
//! per scheme over the stack's own signers (`shared::*::sso`), so what is
//! tried is what is checked.

use crate::Failure;
use shared::clevercloud::sso::CleverCloudSso;
use shared::heroku::sso::{parse_form, HerokuSso};
use shared::scalingo::sso::ScalingoSso;
use std::path::Path;

/// A form's fields, in the order the marketplace posts them.
pub type Form = Vec<(&'static str, String)>;

/// Who signs in.
pub struct User<'a> {
    pub email: &'a str,
    pub user_id: &'a str,
}

/// Clever Cloud's current form: `signature` = SHA-512 over the fields
/// (docs/clevercloud.md, "Single sign-on").
pub fn clevercloud_form(signer: &CleverCloudSso, id: &str, user: &User, timestamp: &str) -> Form {
    let signature = signer.signature(id, user.user_id, user.email, "", timestamp);
    vec![
        ("id", id.to_string()),
        ("timestamp", timestamp.to_string()),
        ("nav-data", String::new()),
        ("email", user.email.to_string()),
        ("user_id", user.user_id.to_string()),
        ("signature", signature),
    ]
}

/// Clever Cloud's legacy form: `token` = SHA-1 of `id:salt:timestamp`.
pub fn clevercloud_legacy_form(signer: &CleverCloudSso, id: &str, email: &str, timestamp: &str) -> Form {
    vec![
        ("id", id.to_string()),
        ("token", signer.token(id, timestamp)),
        ("timestamp", timestamp.to_string()),
        ("nav-data", String::new()),
        ("email", email.to_string()),
    ]
}

/// Heroku's dashboard form for add-on `uuid` (this provider's `id`), its
/// proof in `field`: `user_scoped_resource_token`, `resource_token` or the
/// legacy `token` (docs/heroku.md, "Single sign-on").
pub fn heroku_form(
    signer: &HerokuSso,
    id: &str,
    uuid: &str,
    user: &User,
    timestamp: &str,
    field: &'static str,
) -> Form {
    let mut form: Form = vec![
        ("id", id.to_string()),
        ("resource_id", uuid.to_string()),
        ("timestamp", timestamp.to_string()),
        ("email", user.email.to_string()),
        ("user_id", user.user_id.to_string()),
        ("app", "provider".to_string()),
        ("context_app", "provider".to_string()),
        ("nav-data", String::new()),
        (field, "0".to_string()),
    ];
    // Signed as the stack reads it: the form parsed, then its proof made.
    let unsigned = parse_form(encode(&form).as_bytes()).expect("a form made here parses");
    if let Some(proof) = form.last_mut() {
        proof.1 = signer.sign(&unsigned);
    }
    form
}

/// Scalingo's sign-in link: a GET to `sso_url` with `id`, `timestamp` and
/// `token` (docs/scalingo.md, "Single sign-on").
pub fn scalingo_link(signer: &ScalingoSso, sso_url: &str, id: &str, timestamp: &str) -> String {
    let query = encode(&[
        ("id", id.to_string()),
        ("timestamp", timestamp.to_string()),
        ("token", signer.sign(id, timestamp)),
    ]);
    format!("{sso_url}?{query}")
}

/// `application/x-www-form-urlencoded`, in order.
pub fn encode(fields: &[(&str, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// A page that posts `form` to `action` as soon as it opens (a marketplace's
/// dashboard does the same), with a button for a browser without scripts.
pub fn auto_post_page(action: &str, form: &Form) -> String {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let inputs: String = form
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(value)
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Signing in…</title></head>\n\
         <body onload=\"document.forms[0].submit()\">\n<form method=\"post\" action=\"{}\">\n{inputs}\
         <noscript><button type=\"submit\">Sign in</button></noscript>\n</form>\n</body></html>\n",
        escape(action)
    )
}

/// Writes `text` to `path`, readable by its owner alone (it holds a live
/// sign-in).
pub fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|err| Failure::Failed(format!("cannot write {}: {err}", path.display())))
}

/// `$BROWSER`, else the desktop's opener.
pub fn open_in_browser(target: &str) -> Result<(), Failure> {
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|browser| !browser.trim().is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            }
            .to_string()
        });
    let status = std::process::Command::new(&opener)
        .arg(target)
        .status()
        .map_err(|err| {
            Failure::Failed(format!(
                "cannot start {opener} ({err}): set BROWSER, or open {target}"
            ))
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Failed(format!("{opener} {target} failed ({status})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::secret::Secret;

    #[test]
    fn each_form_verifies_with_the_stacks_own_checks() {
        let user = User {
            email: "a@example.com",
            user_id: "u1",
        };
        let now = chrono::Utc::now();
        let timestamp = now.timestamp().to_string();
        let heroku = HerokuSso::new(Secret::new("salt"), None, 300);
        for field in ["user_scoped_resource_token", "resource_token", "token"] {
            let form = heroku_form(
                &heroku,
                "res_hk_1",
                "01234567-89ab-cdef-0123-456789abcdef",
                &user,
                &timestamp,
                field,
            );
            let parsed = parse_form(encode(&form).as_bytes()).unwrap();
            heroku.verify(&parsed, now).unwrap();
            let stranger = HerokuSso::new(Secret::new("other"), None, 300);
            assert!(stranger.verify(&parsed, now).is_err(), "{field}");
        }
        let scalingo = ScalingoSso::new(Secret::new("salt"), None, 300);
        let link = scalingo_link(
            &scalingo,
            "https://x.example/scalingo/sso",
            "res_sc_1",
            &timestamp,
        );
        assert!(link.starts_with("https://x.example/scalingo/sso?id=res_sc_1&timestamp="));
        assert!(link.ends_with(&format!("token={}", scalingo.sign("res_sc_1", &timestamp))));
        let clevercloud = CleverCloudSso::new(Secret::new("salt"), 300);
        let form = clevercloud_form(&clevercloud, "res_1", &user, &timestamp);
        assert_eq!(
            form[5].1,
            clevercloud.signature("res_1", "u1", "a@example.com", "", &timestamp)
        );
    }

    #[test]
    fn the_page_escapes_what_it_is_given() {
        let page = auto_post_page(
            "https://x.example/a?b=1&c=\"",
            &vec![("email", "<a>&\"".to_string())],
        );
        assert!(
            page.contains("action=\"https://x.example/a?b=1&amp;c=&quot;\""),
            "{page}"
        );
        assert!(page.contains("value=\"&lt;a&gt;&amp;&quot;\""), "{page}");
        assert!(page.contains("document.forms[0].submit()"));
    }
}
