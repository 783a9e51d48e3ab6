//! Cloud 66's partner integration: single sign-on with a multipass and a
//! signature (the link flow lives beside it).
//!
//! Cloud 66 publishes no code for its variant; this project's reading of its
//! text is documented on [`sso::Cloud66Sso`].

pub mod multipass;
pub mod sso;
