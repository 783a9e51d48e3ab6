//! The deployment's secret, split by audience (docs/operating.md, "The
//! secret"): one Secrets Manager secret per part, named
//! `<SECRETS_NAME>/<part>`, and each function granted, and reading, only
//! the parts it uses. An internet-facing sign-in function then holds no
//! marketplace password and no token key; the token key is read only where
//! tokens are sealed or opened.
//!
//! Which function reads which part is fixed here, in code, not in the
//! environment: locally every function runs under one `cargo lambda watch`
//! with one environment, and the recorded-call check
//! (scripts/check_aws_calls.py) must see each function read exactly what
//! its grants in infra/template.yaml allow (scripts/check_policies.py
//! compares the two lists).

/// One part of the secret: the variables that share an audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The marketplaces' Basic-auth passwords (inbound, and the same
    /// passwords out to Clever Cloud's and Scalingo's APIs).
    Lifecycle,
    /// The secret that signs the stack's calls to the vendor's service and
    /// verifies the vendor's calls back.
    Vendor,
    /// The salts and the UID that sign marketplace sign-ins.
    Signin,
    /// The OpenID Connect provider's registered apps and signing key.
    Oidc,
    /// The key that seals Heroku's OAuth grant and tokens at rest.
    Tokens,
    /// The credentials for platforms' APIs only the sync calls: Heroku's
    /// OAuth client secret, Cloudmore's client secret and password.
    Platforms,
}

impl Part {
    pub const ALL: [Part; 6] = [
        Part::Lifecycle,
        Part::Vendor,
        Part::Signin,
        Part::Oidc,
        Part::Tokens,
        Part::Platforms,
    ];

    /// The last segment of the part's secret name (`<SECRETS_NAME>/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Part::Lifecycle => "lifecycle",
            Part::Vendor => "vendor",
            Part::Signin => "signin",
            Part::Oidc => "oidc",
            Part::Tokens => "tokens",
            Part::Platforms => "platforms",
        }
    }

    /// The secret variables the part holds (each `*_PREVIOUS` with its
    /// variable); together, every one of `crate::config::SECRET_VARS`, once.
    pub fn vars(self) -> &'static [&'static str] {
        match self {
            Part::Lifecycle => &[
                "ADDON_PASSWORD",
                "ADDON_PASSWORD_PREVIOUS",
                "HEROKU_PASSWORD",
                "HEROKU_PASSWORD_PREVIOUS",
                "SCALINGO_PASSWORD",
                "SCALINGO_PASSWORD_PREVIOUS",
            ],
            Part::Vendor => &[
                "PROVISIONER_SIGNING_SECRET",
                "PROVISIONER_SIGNING_SECRET_PREVIOUS",
            ],
            Part::Signin => &[
                "ADDON_SSO_SALT",
                "ADDON_SSO_SALT_PREVIOUS",
                "HEROKU_SSO_SALT",
                "HEROKU_SSO_SALT_PREVIOUS",
                "SCALINGO_SSO_SALT",
                "SCALINGO_SSO_SALT_PREVIOUS",
                "CLOUD66_PROVIDER_UID",
                "CLOUD66_PROVIDER_UID_PREVIOUS",
            ],
            Part::Oidc => &["OIDC_CLIENTS", "OIDC_SIGNING_KEY", "OIDC_SIGNING_KEY_PREVIOUS"],
            Part::Tokens => &["HEROKU_TOKEN_KEY", "HEROKU_TOKEN_KEY_PREVIOUS"],
            Part::Platforms => &[
                "HEROKU_CLIENT_SECRET",
                "HEROKU_CLIENT_SECRET_PREVIOUS",
                "CLOUDMORE_CLIENT_SECRET",
                "CLOUDMORE_CLIENT_SECRET_PREVIOUS",
                "CLOUDMORE_PASSWORD",
                "CLOUDMORE_PASSWORD_PREVIOUS",
            ],
        }
    }

    /// The part that holds `var`, if it is a secret variable.
    pub fn of(var: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|part| part.vars().contains(&var))
    }

    /// The part's secret name under the deployment's `prefix`.
    pub fn secret_name(self, prefix: &str) -> String {
        format!("{prefix}/{}", self.name())
    }
}

/// Each function (its binary name) and the parts it reads; the template
/// grants each exactly these (scripts/check_policies.py).
pub const READERS: [(&str, &[Part]); 12] = [
    ("provision", &[Part::Lifecycle, Part::Vendor, Part::Tokens]),
    ("plan-change", &[Part::Lifecycle, Part::Vendor]),
    ("deprovision", &[Part::Lifecycle, Part::Vendor]),
    (
        "platform-sync",
        &[Part::Lifecycle, Part::Vendor, Part::Tokens, Part::Platforms],
    ),
    ("sso-login", &[Part::Signin, Part::Oidc]),
    ("oidc", &[Part::Oidc]),
    ("cloud66-link", &[Part::Vendor]),
    ("dashboard", &[]),
    // The registration opens sessions and hands off to the vendor's app.
    ("marketplace-register", &[Part::Vendor, Part::Oidc]),
    ("marketplace-events", &[Part::Vendor]),
    // The vendor's usage reports are signed with the vendor's secret.
    ("usage", &[Part::Vendor]),
    // The meter calls AWS alone.
    ("metering", &[]),
];

/// The parts `caller` reads: a function's own, or every part for anything
/// else (the operator's `provider`, the tests' and the benchmarks' tools).
pub fn read_by(caller: &str) -> &'static [Part] {
    READERS
        .iter()
        .find(|(function, _)| *function == caller)
        .map_or(&Part::ALL[..], |(_, parts)| parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SECRET_VARS;

    #[test]
    fn every_secret_variable_is_in_exactly_one_part_with_its_previous_value() {
        let mut held: Vec<&str> = Part::ALL
            .iter()
            .flat_map(|part| part.vars().iter().copied())
            .collect();
        held.sort_unstable();
        let mut expected = SECRET_VARS.to_vec();
        expected.sort_unstable();
        assert_eq!(held, expected);
        for var in SECRET_VARS {
            let part = Part::of(var).unwrap();
            if let Some(base) = var.strip_suffix("_PREVIOUS") {
                assert_eq!(Part::of(base), Some(part), "{var} is apart from {base}");
            }
        }
        assert_eq!(Part::of("TABLE_NAME"), None);
    }

    #[test]
    fn each_function_reads_only_its_parts_and_tools_read_all() {
        assert_eq!(read_by("sso-login"), [Part::Signin, Part::Oidc]);
        assert_eq!(read_by("oidc"), [Part::Oidc]);
        assert!(read_by("dashboard").is_empty());
        assert_eq!(read_by("provider"), Part::ALL);
        let token_readers: Vec<&str> = READERS
            .iter()
            .filter(|(_, parts)| parts.contains(&Part::Tokens))
            .map(|(function, _)| *function)
            .collect();
        assert_eq!(token_readers, ["provision", "platform-sync"]);
        let names: std::collections::HashSet<&str> = Part::ALL.iter().map(|part| part.name()).collect();
        assert_eq!(names.len(), Part::ALL.len());
        assert_eq!(
            Part::Tokens.secret_name("my-addon/provider"),
            "my-addon/provider/tokens"
        );
    }
}
