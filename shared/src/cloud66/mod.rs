//! Cloud 66's partner integration: the link flow (`link`) and single sign-on
//! with a multipass and a signature (`sso`).
//!
//! Cloud 66 publishes no code for its variant; this project's reading of its
//! text is documented on [`sso::Cloud66Sso`].

pub mod link;
pub mod multipass;
pub mod pending;
pub mod sso;
